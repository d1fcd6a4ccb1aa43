//! Which declared `Content-Type`s are JSON.

use hyper::header::HeaderValue;

/// `application/json` or any `application/*+json`, with or without parameters such as charset.
pub(super) fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    // Media types are case-insensitive; compared in place, as this runs on every charge.
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .len()
                .checked_sub(5)
                .and_then(|plus| subtype.get(plus..))
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_recognised_in_any_case_with_parameters() {
        for (content_type, json) in [
            ("application/json", true),
            ("Application/JSON; charset=UTF-8", true),
            ("application/problem+json", true),
            ("application/merge-patch+JSON ;q=1", true),
            ("application/jsonx", false),
            ("application/json-seq", false),
            ("text/json", false),
            ("json", false),
            ("", false),
        ] {
            assert_eq!(
                is_json(&HeaderValue::from_static(content_type)),
                json,
                "{content_type:?}"
            );
        }
    }
}
