//! Placeholder: filled by the parser work.
