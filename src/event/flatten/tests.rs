use super::*;
use crate::attr::AttrValue;

fn limits() -> ParseLimits {
    ParseLimits::default()
}

fn flat(json: &str) -> Attributes {
    flatten(json, &limits()).unwrap().attributes
}

fn get(attrs: &Attributes, key: &str) -> Option<AttrValue> {
    attrs.get(key).map(|v| v.to_value())
}

fn s(v: &str) -> AttrValue {
    AttrValue::Str(v.to_owned())
}

#[test]
fn nested_objects_become_dotted_keys_in_document_order() {
    let a = flat(r#"{"b":{"c":{"d":"x"},"e":true},"a":1}"#);
    assert_eq!(
        a.to_vec(),
        vec![
            ("b.c.d".to_owned(), s("x")),
            ("b.e".to_owned(), AttrValue::Bool(true)),
            ("a".to_owned(), AttrValue::Int(1)),
        ]
    );
}

#[test]
fn scalars_keep_their_types() {
    let a = flat(
        r#"{"s":"v","t":true,"f":false,"i":-5,"u":9223372036854775807,"big":18446744073709551615,
            "huge":123456789012345678901234567890,"neg":-9223372036854775809,"fl":0.25,
            "exp":1e-7,"whole":100000000000000000000.0,"nz":-0,"inf":1e400}"#,
    );
    assert_eq!(get(&a, "s"), Some(s("v")));
    assert_eq!(get(&a, "t"), Some(AttrValue::Bool(true)));
    assert_eq!(get(&a, "f"), Some(AttrValue::Bool(false)));
    assert_eq!(get(&a, "i"), Some(AttrValue::Int(-5)));
    assert_eq!(get(&a, "u"), Some(AttrValue::Int(i64::MAX)));
    assert_eq!(get(&a, "big"), Some(s("18446744073709551615")));
    assert_eq!(get(&a, "huge"), Some(s("123456789012345678901234567890")));
    assert_eq!(get(&a, "neg"), Some(s("-9223372036854775809")));
    assert_eq!(get(&a, "fl"), Some(AttrValue::Float(0.25)));
    assert_eq!(get(&a, "exp"), Some(AttrValue::Float(1e-7)));
    assert_eq!(get(&a, "whole"), Some(AttrValue::Float(1e20)));
    match get(&a, "nz") {
        Some(AttrValue::Float(v)) => assert!(v == 0.0 && v.is_sign_negative()),
        other => panic!("-0 gave {other:?}"),
    }
    assert!(matches!(get(&a, "inf"), Some(AttrValue::Str(t)) if t.starts_with("1e")));
}

#[test]
fn null_and_empty_containers_give_no_attribute() {
    assert_eq!(
        flat(r#"{"n":null,"o":{},"a":[],"deep":{"x":{},"y":null}}"#).to_vec(),
        vec![]
    );
}

#[test]
fn arrays_of_one_scalar_type_are_typed_arrays() {
    let a = flat(
        r#"{"s":["a","b\n"],"b":[true,false],"i":[1,-2],"f":[1.5,2.0],"big":[18446744073709551616]}"#,
    );
    assert_eq!(
        get(&a, "s"),
        Some(AttrValue::StrArray(vec!["a".into(), "b\n".into()]))
    );
    assert_eq!(get(&a, "b"), Some(AttrValue::BoolArray(vec![true, false])));
    assert_eq!(get(&a, "i"), Some(AttrValue::IntArray(vec![1, -2])));
    assert_eq!(get(&a, "f"), Some(AttrValue::FloatArray(vec![1.5, 2.0])));
    assert_eq!(
        get(&a, "big"),
        Some(AttrValue::StrArray(vec!["18446744073709551616".into()]))
    );
}

#[test]
fn mixed_arrays_are_compact_json_strings() {
    let a = flat(
        r#"{"m":[ "x" , 1, 2.5, true, null, {"k" : "a b"} ],"n":[null],"nested":[[1,2],[3,[4,5]]],"io":[1,2.5]}"#,
    );
    assert_eq!(
        get(&a, "m"),
        Some(s(r#"["x",1,2.5,true,null,{"k":"a b"}]"#))
    );
    assert_eq!(get(&a, "n"), Some(s("[null]")));
    assert_eq!(get(&a, "nested"), Some(s("[[1,2],[3,[4,5]]]")));
    assert_eq!(get(&a, "io"), Some(s("[1,2.5]")));
}

#[test]
fn arrays_of_objects_get_index_keys() {
    let a = flat(r#"{"p":[{"name":"a","ports":[1,2]},{"name":"b","x":{"y":null,"z":"q"}}]}"#);
    assert_eq!(
        a.to_vec(),
        vec![
            ("p.0.name".to_owned(), s("a")),
            ("p.0.ports".to_owned(), AttrValue::IntArray(vec![1, 2])),
            ("p.1.name".to_owned(), s("b")),
            ("p.1.x.z".to_owned(), s("q")),
        ]
    );
    let many: String = format!(
        "{{\"p\":[{}]}}",
        (0..12)
            .map(|i| format!("{{\"i\":{i}}}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(get(&flat(&many), "p.11.i"), Some(AttrValue::Int(11)));
}

#[test]
fn collisions_keep_the_first_value() {
    let a = flat(r#"{"a.b":1,"a":{"b":2,"c":3}}"#);
    assert_eq!(
        a.to_vec(),
        vec![
            ("a.b".to_owned(), AttrValue::Int(1)),
            ("a.c".to_owned(), AttrValue::Int(3))
        ]
    );
    let a = flat(r#"{"a":{"b":2},"a.b":1}"#);
    assert_eq!(a.to_vec(), vec![("a.b".to_owned(), AttrValue::Int(2))]);
}

#[test]
fn duplicate_members_keep_the_first_whole() {
    let a = flat(r#"{"t":"first","t":"second","o":{"x":1},"o":{"y":2},"n":null,"n":5}"#);
    assert_eq!(
        a.to_vec(),
        vec![
            ("t".to_owned(), s("first")),
            ("o.x".to_owned(), AttrValue::Int(1))
        ]
    );
    // Past the linear scan, the hash set keeps the same rule.
    let mut json = String::from("{");
    for i in 0..40 {
        json.push_str(&format!("\"k{i}\":{i},"));
    }
    json.push_str("\"k3\":99,\"k39\":99}");
    let a = flat(&json);
    assert_eq!(a.len(), 40);
    assert_eq!(get(&a, "k3"), Some(AttrValue::Int(3)));
    assert_eq!(get(&a, "k39"), Some(AttrValue::Int(39)));
}

#[test]
fn odd_keys_are_used_as_they_are() {
    let a = flat(r#"{"":"e","a/b":1," sp ":2,"o":{"":{"":3}},"x.y":{"z":4}}"#);
    assert_eq!(get(&a, ""), Some(s("e")));
    assert_eq!(get(&a, "a/b"), Some(AttrValue::Int(1)));
    assert_eq!(get(&a, " sp "), Some(AttrValue::Int(2)));
    assert_eq!(get(&a, "o.."), Some(AttrValue::Int(3)));
    assert_eq!(get(&a, "x.y.z"), Some(AttrValue::Int(4)));
}

#[test]
fn strings_are_unescaped() {
    let a = flat(r#"{"k\u00e9y":"a\ud83d\ude00\u0000\/\"\\\n\u2028","arr":["\u00e9","\/"]}"#);
    assert_eq!(get(&a, "kéy"), Some(s("a😀\0/\"\\\n\u{2028}")));
    assert_eq!(
        get(&a, "arr"),
        Some(AttrValue::StrArray(vec!["é".into(), "/".into()]))
    );
}

#[test]
fn depth_limit_keeps_the_subtree_as_compact_json() {
    let lim = ParseLimits {
        max_depth: 2,
        ..limits()
    };
    let f = flatten(
        r#"{"a":{"b":{"c": [1, {"d" : "x y"}]},"s":"v","e":{}},"z":[{"q":1}]}"#,
        &lim,
    )
    .unwrap();
    assert_eq!(
        f.attributes.to_vec(),
        vec![
            ("a.b".to_owned(), s(r#"{"c":[1,{"d":"x y"}]}"#)),
            ("a.s".to_owned(), s("v")),
            ("z".to_owned(), s(r#"[{"q":1}]"#)),
        ]
    );
    assert_eq!(f.truncations.depth, 2);
}

#[test]
fn attribute_limit_drops_and_counts() {
    let lim = ParseLimits {
        max_attributes: 2,
        ..limits()
    };
    let f = flatten(
        r#"{"a":1,"b":[1,2],"c":"x","d":{"e":1,"f":[{"g":1}]}}"#,
        &lim,
    )
    .unwrap();
    assert_eq!(f.attributes.len(), 2);
    assert_eq!(f.truncations.attributes, 3);
}

#[test]
fn value_limit_cuts_at_char_boundaries_and_counts() {
    let lim = ParseLimits {
        max_value_bytes: 8,
        ..limits()
    };
    let f = flatten(
        r#"{"s":"ééééé","ok":"12345678","a":["abc","defgh","ij"],"one":["0123456789"],"i":[1,2],"m":[1,"x",2]}"#,
        &lim,
    )
    .unwrap();
    let a = &f.attributes;
    assert_eq!(get(a, "s"), Some(s("éééé")));
    assert_eq!(get(a, "ok"), Some(s("12345678")));
    assert_eq!(
        get(a, "a"),
        Some(AttrValue::StrArray(vec!["abc".into(), "defgh".into()]))
    );
    assert_eq!(
        get(a, "one"),
        Some(AttrValue::StrArray(vec!["01234567".into()]))
    );
    assert_eq!(get(a, "i"), Some(AttrValue::IntArray(vec![1])));
    assert_eq!(get(a, "m"), Some(s("[1,\"x\",2")));
    assert_eq!(f.truncations.value_bytes, 5);
    for (_, v) in a {
        assert!(v.byte_len() <= 8);
    }
}

/// Bool, integer and float arrays share one path: each keeps the elements that fit in
/// `max_value_bytes` (a bool counts 1 byte, a number 8) and counts one cut.
#[test]
fn fixed_size_arrays_keep_what_fits() {
    let lim = ParseLimits {
        max_value_bytes: 8,
        ..limits()
    };
    let f = flatten(
        r#"{"b":[true,false,true,false,true,false,true,false,true],"i":[1,2],"f":[0.5,1.5],"one":[false]}"#,
        &lim,
    )
    .unwrap();
    let a = &f.attributes;
    assert_eq!(
        get(a, "b"),
        Some(AttrValue::BoolArray([true, false].repeat(4)))
    );
    assert_eq!(get(a, "i"), Some(AttrValue::IntArray(vec![1])));
    assert_eq!(get(a, "f"), Some(AttrValue::FloatArray(vec![0.5])));
    assert_eq!(get(a, "one"), Some(AttrValue::BoolArray(vec![false])));
    assert_eq!(f.truncations.value_bytes, 3);
}

#[test]
fn number_marker_key_in_the_input_is_an_ordinary_member() {
    let a = flat(
        r#"{"n":{"$serde_json::private::Number":"5"},"m":{"$serde_json::private::Number":{"x":1}}}"#,
    );
    assert_eq!(get(&a, "n.$serde_json::private::Number"), Some(s("5")));
    assert_eq!(
        get(&a, "m.$serde_json::private::Number.x"),
        Some(AttrValue::Int(1))
    );
}

#[test]
fn not_an_object_or_not_json_fails_without_quoting() {
    for bad in [
        "",
        "  ",
        "[1]",
        "\"secret\"",
        "12345678901234567890123",
        "1.5",
        "true",
        "null",
        "{\"a\":1} x",
        "{\"a\":1}{\"b\":2}",
        "{\"a\":NaN}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":[\"\\ud800\"]}",
        "{'a': 1}",
    ] {
        let e = flatten(bad, &limits()).unwrap_err();
        assert!(!e.detail.contains("secret"), "{bad:?}: {e}");
        assert!(!e.detail.is_empty());
    }
    assert!(flatten(" \t{\"a\":1}\r\n ", &limits()).is_ok());
}

fn deep(open: &str, close: &str, n: usize) -> String {
    let mut s = String::from(r#"{"x":"#);
    for _ in 0..n {
        s.push_str(open);
    }
    s.push('1');
    for _ in 0..n {
        s.push_str(close);
    }
    s.push('}');
    s
}

#[test]
fn very_deep_nesting_neither_overflows_nor_fails() {
    let arrays = deep("[", "]", 100_000);
    let f = flatten(&arrays, &limits()).unwrap();
    assert_eq!(f.attributes.len(), 1);
    assert_eq!(f.truncations.value_bytes, 1);
    let objects = deep(r#"{"a":"#, "}", 100_000);
    let f = flatten(&objects, &limits()).unwrap();
    assert_eq!(f.attributes.len(), 1);
    assert_eq!(f.truncations.depth, 1);
    assert!(f.attributes.key(0).starts_with("x.a.a."));
    let marker = deep(r#"{"$serde_json::private::Number":"#, "}", 100_000);
    assert!(flatten(&marker, &limits()).is_ok());
    let bare = "[".repeat(100_000);
    assert!(flatten(&bare, &limits()).is_err());
}

#[test]
fn depth_cap_fits_a_small_stack() {
    let objects = deep(r#"{"a":"#, "}", 1_000);
    let lim = ParseLimits {
        max_depth: usize::MAX,
        ..limits()
    };
    let handle = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || flatten(&objects, &lim).map(|f| f.truncations.depth))
        .unwrap();
    assert_eq!(handle.join().unwrap(), Ok(1));
}

#[test]
fn compact_removes_only_whitespace_outside_strings() {
    let mut out = String::new();
    compact_into(&mut out, "{ \"a b\" :\t[ 1 ,\n\"c\\\" d\" ] }");
    assert_eq!(out, r#"{"a b":[1,"c\" d"]}"#);
}
