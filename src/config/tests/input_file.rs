//! The file inputs' keys: per-type checks, the rules between inputs and sinks.

use super::*;

/// A key the type does not take is an error naming the key, the type and the line.
#[test]
fn file_input_keys_are_checked_per_type() {
    let err = error("[[input]]\ntype = \"fifo\"\npath = \"a\"\nstart_at = \"end\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 4: input #1.start_at: a fifo input does not take this key"
    );
    let err = error("[[input]]\ntype = \"stdin\"\nmode = \"0600\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 3: input #1.mode: a stdin input does not take this key"
    );
    let err = error("[[input]]\ntype = \"file\"\npath = \"a\"\ntee = \"stdout\"\n");
    assert!(
        err.contains("input #1.tee: a file input does not take this key"),
        "{err}"
    );
    let err = error("[[input]]\ntype = \"unix\"\nstart_at = \"end\"\n");
    assert!(
        err.contains("input #1.start_at: a unix input does not take this key"),
        "{err}"
    );
}

/// file and fifo need a path; values are checked and quoted.
#[test]
fn file_input_values_are_checked() {
    let err = error("[[input]]\ntype = \"file\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 1: input #1.path: a file input needs a path"
    );
    assert!(error("[[input]]\ntype = \"fifo\"\n").contains("a fifo input needs a path"));
    let err = error("[[input]]\ntype = \"file\"\npath = \"a\"\nstart_at = \"middle\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 4: input #1.start_at: \"middle\" is not \"beginning\" or \"end\""
    );
    let err = error("[[input]]\ntype = \"stdin\"\ntee = \"stderr\"\n[[sink]]\ntype = \"zipkin\"\n");
    assert!(
        err.contains("input #1.tee: \"stderr\" is not a tee target (only \"stdout\")"),
        "{err}"
    );
    let err = error("[[input]]\ntype = \"file\"\npath = \"logs/[a\"\n");
    assert!(err.contains("is not a valid glob pattern"), "{err}");
}

/// `tee = "stdout"` beside a stdout sink (the default one too) names both; two stdin
/// inputs and two inputs on one path are errors.
#[test]
fn tee_with_a_stdout_sink_and_two_stdins_are_errors() {
    let err = error("[[input]]\ntype = \"stdin\"\ntee = \"stdout\"\n");
    assert_eq!(
        err,
        "config file ./x.toml, line 3: input #1.tee: input \"stdin\" copies its lines to stdout \
         (tee = \"stdout\") and sink #1 (\"stdout\") writes spans to stdout; choose one (the \
         default sink is stdout: add a [[sink]] of another type)"
    );
    let err = error(
        "[[input]]\ntype = \"unix\"\n[[input]]\ntype = \"fifo\"\nname = \"p\"\npath = \"p\"\n\
         tee = \"stdout\"\n[[sink]]\ntype = \"zipkin\"\n[[sink]]\ntype = \"stdout\"\nname = \"s\"\n",
    );
    assert!(
        err.contains("line 7: input #2.tee: input \"p\" copies") && err.contains("sink #2 (\"s\")"),
        "{err}"
    );
    let err = error("[[input]]\ntype = \"stdin\"\n[[input]]\ntype = \"stdin\"\nname = \"b\"\n");
    assert!(
        err.contains("input #2.type: input #1 reads stdin already"),
        "{err}"
    );
    let err = error(
        "[[input]]\ntype = \"file\"\npath = \"a.log\"\n[[input]]\ntype = \"file\"\nname = \"b\"\npath = \"a.log\"\n",
    );
    assert!(
        err.contains("input #2.path: input #1 already listens on \"a.log\""),
        "{err}"
    );
}
