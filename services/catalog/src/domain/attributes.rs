//! Attribute definitions a category declares, and checking a product's
//! free-form attributes against the definitions of its category and every
//! ancestor.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    Text,
    Number,
    Boolean,
    Enum,
}

/// One attribute a category's products have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttributeDef {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AttributeKind,
    #[serde(default)]
    pub required: bool,
    /// Offered as a filter (`attr.<name>=`) and counted in facets.
    #[serde(default)]
    pub filterable: bool,
    /// The allowed values of an `enum`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl AttributeDef {
    /// An enum's values: at most 100, distinct, each 1 to 100 characters that
    /// show something and hide nothing (they reach every product page).
    fn check_values(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        let values_ok = self.values.len() <= 100
            && self.values.iter().all(|v| {
                v.chars().count() <= 100
                    && emporium_http::text::shows_something(v)
                    && emporium_http::text::refuse_hidden(v).is_ok()
                    && seen.insert(v.as_str())
            });
        if values_ok {
            Ok(())
        } else {
            Err(format!(
                "enum attribute {} needs at most 100 distinct values of 1 to 100 characters, \
                 without control, invisible or bidirectional characters",
                self.name
            ))
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            let shown: String = self.name.chars().take(64).collect();
            return Err(format!(
                "attribute name {shown:?} must be 1-64 of a-z, 0-9 and _"
            ));
        }
        match (self.kind, self.values.is_empty()) {
            (AttributeKind::Enum, true) => {
                Err(format!("enum attribute {} needs values", self.name))
            }
            (AttributeKind::Enum, false) => self.check_values(),
            (_, false) => Err(format!("only enum attributes have values ({})", self.name)),
            (_, true) => Ok(()),
        }
    }
}

/// Checks `attributes` against `defs`: every required one present, every
/// value of the declared type (enums from their list), no undeclared names.
/// Returns one message per problem, keyed by `attributes.<name>`.
pub fn validate_attributes(
    defs: &[AttributeDef],
    attributes: &Map<String, Value>,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for def in defs {
        let field = format!("attributes.{}", def.name);
        match attributes.get(&def.name) {
            None | Some(Value::Null) if def.required => {
                problems.push((field, "is required".to_owned()))
            }
            None | Some(Value::Null) => {}
            Some(value) => {
                let ok = match def.kind {
                    AttributeKind::Text => value.as_str().is_some_and(|s| {
                        s.chars().count() <= 1000 && emporium_http::text::refuse_hidden(s).is_ok()
                    }),
                    AttributeKind::Number => value.is_number(),
                    AttributeKind::Boolean => value.is_boolean(),
                    AttributeKind::Enum => value
                        .as_str()
                        .is_some_and(|s| def.values.iter().any(|v| v == s)),
                };
                if !ok {
                    let expected = match def.kind {
                        AttributeKind::Text => {
                            "text (at most 1000 characters, no control, invisible or \
                             bidirectional characters)"
                                .to_owned()
                        }
                        AttributeKind::Number => "a number".to_owned(),
                        AttributeKind::Boolean => "true or false".to_owned(),
                        AttributeKind::Enum => format!("one of {}", def.values.join(", ")),
                    };
                    problems.push((field, format!("must be {expected}")));
                }
            }
        }
    }
    for name in attributes.keys() {
        if !defs.iter().any(|d| &d.name == name) {
            problems.push((
                format!("attributes.{name}"),
                "is not defined for this category".to_owned(),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defs() -> Vec<AttributeDef> {
        vec![
            AttributeDef {
                name: "colour".into(),
                kind: AttributeKind::Enum,
                required: true,
                filterable: true,
                values: vec!["red".into(), "blue".into()],
            },
            AttributeDef {
                name: "weight_g".into(),
                kind: AttributeKind::Number,
                required: false,
                filterable: false,
                values: vec![],
            },
            AttributeDef {
                name: "organic".into(),
                kind: AttributeKind::Boolean,
                required: false,
                filterable: true,
                values: vec![],
            },
        ]
    }

    fn check(v: Value) -> Vec<(String, String)> {
        validate_attributes(&defs(), v.as_object().unwrap())
    }

    #[test]
    fn accepts_what_the_category_declares() {
        assert!(check(json!({"colour": "red", "weight_g": 12.5, "organic": true})).is_empty());
        assert!(check(json!({"colour": "blue"})).is_empty());
    }

    #[test]
    fn names_every_problem() {
        let problems = check(json!({"weight_g": "heavy", "organic": 1, "shape": "round"}));
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "attributes.colour",
                "attributes.weight_g",
                "attributes.organic",
                "attributes.shape"
            ]
        );
        assert_eq!(
            check(json!({"colour": "green"}))[0].1,
            "must be one of red, blue"
        );
    }

    #[test]
    fn definitions_are_checked() {
        let mut d = defs()[0].clone();
        assert!(d.validate().is_ok());
        d.values.clear();
        assert!(d.validate().is_err());
        let bad = AttributeDef {
            name: "Bad Name".into(),
            kind: AttributeKind::Text,
            required: false,
            filterable: false,
            values: vec![],
        };
        assert!(bad.validate().is_err());
    }
}
