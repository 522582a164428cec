//! The strict JSON schemas of what the sinks send (`shared/schemas/`): draft-07 validators
//! with formats checked, and the schemas' own valid and invalid examples.

use serde_json::Value;

use super::shared_dir;

/// The draft-07 validator of `shared/schemas/{name}`, formats checked.
pub fn schema(name: &str) -> jsonschema::Validator {
    let path = shared_dir().join("schemas").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{path:?} does not compile: {e}"))
}

/// The file `name` of `shared/schemas/fixtures/`, as JSON (e.g.
/// `honeycomb/response-ok.json`).
pub fn example(name: &str) -> Value {
    let path = shared_dir().join("schemas/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Panics listing every way `instance` breaks `validator`.
pub fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks the schema:\n{}\n{instance}",
        errors.join("\n")
    );
}

/// The schema's own examples: `valid-*.json` pass, `invalid-*.json` fail (so a validator
/// that accepted everything would show here).
pub fn assert_schema_examples(validator: &jsonschema::Validator, folder: &str) {
    let dir = shared_dir().join("schemas/fixtures").join(folder);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let instance: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if name.starts_with("valid-") {
            assert_valid(validator, &instance, &name);
        } else if name.starts_with("invalid-") {
            assert!(!validator.is_valid(&instance), "{name} passes the schema");
        } else {
            continue;
        }
        checked += 1;
    }
    assert!(checked >= 5, "schema examples missing in {dir:?}");
}
