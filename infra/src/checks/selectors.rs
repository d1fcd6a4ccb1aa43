//! Label-selector semantics as the API server applies them (`matchLabels` AND
//! `matchExpressions`; an absent or empty selector selects everything), over JSON objects.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Cluster;

/// An object's labels, borrowed from its JSON.
pub type Labels<'a> = BTreeMap<&'a str, &'a str>;

/// The labels of a `metadata.labels` (or pod template labels) value.
pub(super) fn labels_of(value: &Value) -> Labels<'_> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a LabelSelector (as JSON) selects `labels`. An absent or empty selector selects all.
pub fn selects(selector: &Value, labels: &Labels<'_>) -> bool {
    let match_labels_ok = selector["matchLabels"].as_object().is_none_or(|m| {
        m.iter()
            .all(|(k, v)| labels.get(k.as_str()).copied() == v.as_str())
    });
    let expressions_ok = selector["matchExpressions"].as_array().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let actual = labels.get(key).copied();
            match e["operator"].as_str().unwrap_or("") {
                "In" => actual.is_some_and(|a| values.contains(&a)),
                "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
                "Exists" => actual.is_some(),
                "DoesNotExist" => actual.is_none(),
                _ => false,
            }
        })
    });
    match_labels_ok && expressions_ok
}

/// Namespaces a selector matches; a `kubernetes.io/metadata.name` label is looked up directly.
pub(super) fn matching_namespaces<'a>(cluster: &Cluster<'a>, selector: &Value) -> Vec<&'a str> {
    if let Some(name) = selector["matchLabels"]["kubernetes.io/metadata.name"].as_str() {
        return cluster
            .namespaces
            .get_key_value(name)
            .filter(|(_, labels)| selects(selector, labels))
            .map(|(name, _)| vec![*name])
            .unwrap_or_default();
    }
    cluster
        .namespaces
        .iter()
        .filter(|(_, labels)| selects(selector, labels))
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_follow_match_expressions() {
        let labels: Labels<'_> = BTreeMap::from([("tier", "web")]);
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}),
            &labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}),
            &labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
            &labels
        ));
        assert!(selects(&json!({}), &labels));
    }
}
