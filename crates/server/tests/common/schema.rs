//! A small validator for the subset of OpenAPI 3.0 schemas our document
//! uses (type, nullable, required, properties, additionalProperties,
//! enum, items, $ref), so tests can hold every answer to its schema.

use serde_json::Value;

/// Every way `v` breaks `schema` (resolving `$ref`s in `doc`), with the
/// JSON path of each.
pub fn violations(doc: &Value, schema: &Value, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, v, "$", &mut out);
    out
}

fn violations_at(doc: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, v, at, &mut out);
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(alts) = schema["oneOf"].as_array() {
        let tries: Vec<Vec<String>> = alts.iter().map(|a| violations_at(doc, a, v, at)).collect();
        if !tries.iter().any(Vec::is_empty) {
            out.push(format!("{at}: matches none of the alternatives: {tries:?}"));
        }
        return;
    }
    if v.is_null() {
        if schema["nullable"] != true && schema.get("type").is_some() {
            out.push(format!("{at}: null where the schema does not allow it"));
        }
        return;
    }
    if let Some(values) = schema["enum"].as_array()
        && !values.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {values:?}"));
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return out.push(format!("{at}: expected an object, got {v}"));
            };
            for r in schema["required"].as_array().into_iter().flatten() {
                let k = r.as_str().unwrap_or_default();
                if !obj.contains_key(k) {
                    out.push(format!("{at}: required property {k} is missing"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, val) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check(doc, s, val, &format!("{at}.{k}"), out),
                    None if schema["additionalProperties"] == false => {
                        out.push(format!("{at}: property {k} is not in the schema"))
                    }
                    None => {
                        if let Some(extra) = schema["additionalProperties"].as_object() {
                            check(
                                doc,
                                &Value::Object(extra.clone()),
                                val,
                                &format!("{at}.{k}"),
                                out,
                            );
                        }
                    }
                }
            }
        }
        Some("array") => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(doc, &schema["items"], item, &format!("{at}[{i}]"), out);
                }
            }
            None => out.push(format!("{at}: expected an array, got {v}")),
        },
        Some("string") if !v.is_string() => out.push(format!("{at}: expected a string, got {v}")),
        Some("integer") if !(v.is_i64() || v.is_u64()) => {
            out.push(format!("{at}: expected an integer, got {v}"))
        }
        Some("number") if !v.is_number() => out.push(format!("{at}: expected a number, got {v}")),
        Some("boolean") if !v.is_boolean() => {
            out.push(format!("{at}: expected a boolean, got {v}"))
        }
        _ => {}
    }
}

/// A small value that the schema accepts (for request bodies).
pub fn example(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("object") => {
            let mut m = serde_json::Map::new();
            for r in schema["required"].as_array().into_iter().flatten() {
                let k = r.as_str().unwrap_or_default();
                m.insert(k.into(), example(doc, &schema["properties"][k]));
            }
            Value::Object(m)
        }
        Some("array") => Value::Array(vec![]),
        Some("integer") => Value::from(1),
        Some("number") => Value::from(1.0),
        Some("boolean") => Value::Bool(false),
        _ => Value::String("example".into()),
    }
}
