//! The charge request Antaeus sends, parsed and checked without losing any digit of `value`.

use super::text;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// `{"currency": <any>, "value": <number>, "customer_id": <integer>}` in any key order.
///
/// `currency` is accepted as any JSON value because unpatched Antaeus serialises its `Currency`
/// enum as `{}`. `value` stays raw JSON text: it is a BigDecimal of any precision.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object with currency, value and customer_id")]
struct Wire<'a> {
    #[allow(dead_code, reason = "required to be present, never read")]
    currency: IgnoredAny,
    #[serde(borrow)]
    value: &'a RawValue,
    customer_id: i64,
}

/// A charge request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub customer_id: i64,
}

/// Parses and checks a request body; the error says what is wrong, fit for a 400 answer.
///
/// The whole body must be JSON text, including what is ignored: see [`text`] for the checks
/// serde_json leaves out of skipped values.
pub fn parse(body: &[u8]) -> Result<Charge, String> {
    let json = text::utf8(body)?;
    // serde's derive also accepts a struct written as an array (`[{},1,42]`); Antaeus never sends one.
    if json.trim_ascii_start().starts_with('[') {
        return Err("invalid charge request: expected a JSON object with currency, value and customer_id, got an array".to_owned());
    }
    // From text already known to be UTF-8: serde_json then does not decode each string again.
    let wire: Wire =
        serde_json::from_str(json).map_err(|e| format!("invalid charge request: {e}"))?;
    text::no_lone_surrogates(json)?;
    check_value(wire.value.get())?;
    Ok(Charge {
        customer_id: wire.customer_id,
    })
}

/// Checks that the JSON text of `value` is a positive number whose magnitude fits a finite double.
///
/// Positivity is decided on the digits, so `1e-400` (which a double rounds to 0) is positive and
/// `123456789012345678901234567890.123456789` keeps every digit. The text is valid JSON already.
fn check_value(raw: &str) -> Result<(), String> {
    let raw = raw.trim();
    let kind = match raw.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => None,
        Some(b'"') => Some("a string"),
        Some(b'{') => Some("an object"),
        Some(b'[') => Some("an array"),
        Some(b't' | b'f') => Some("a boolean"),
        _ => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(format!(
            "invalid charge request: value must be a JSON number, got {kind}"
        ));
    }
    let mantissa = raw.split(['e', 'E']).next().unwrap_or(raw);
    if raw.starts_with('-') || !mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(format!(
            "invalid charge request: value must be positive, got {raw}"
        ));
    }
    // Without an exponent, at most 308 integer digits stay below f64::MAX (1.8e308): finite without
    // parsing the text (for Antaeus' 30-digit BigDecimals the parse cost more than the charge).
    let integer_digits = mantissa.split('.').next().map_or(0, str::len);
    if mantissa.len() == raw.len() && integer_digits <= 308 {
        return Ok(());
    }
    // Rust parses any JSON number text; only the magnitude can fail, as infinity.
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(()),
        _ => Err(format!(
            "invalid charge request: value must be finite, got {raw}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str) -> String {
        parse(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn stock_antaeus_bodies_are_accepted() {
        assert_eq!(
            parse(super::super::ANTAEUS_BODY.as_bytes()),
            Ok(Charge { customer_id: 1 })
        );
        // A BigDecimal with many digits, keys in another order.
        let body = r#"{"currency":{},"value":1234.5678901234567890123456789,"customer_id":42}"#;
        assert_eq!(parse(body.as_bytes()), Ok(Charge { customer_id: 42 }));
    }

    #[test]
    fn keys_in_any_order_and_any_currency_are_accepted() {
        for body in [
            r#"{"customer_id":1,"value":10,"currency":"EUR"}"#,
            r#"{"value":0.01,"currency":{"code":"DKK"},"customer_id":2}"#,
            r#"{"currency":null,"customer_id":3,"value":123456789012345678901234567890.123456789}"#,
            r#" { "value" : 1E-400 , "customer_id" : 4 , "currency" : [ ] , "extra" : true } "#,
        ] {
            assert!(parse(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        assert!(error(r#"{"currency":{},"value":1}"#).contains("missing field `customer_id`"));
        assert!(error(r#"{"value":1,"customer_id":1}"#).contains("missing field `currency`"));
        assert!(error(r#"{"currency":{},"customer_id":1}"#).contains("missing field `value`"));
    }

    #[test]
    fn non_positive_values_are_rejected() {
        for value in [
            "0",
            "0.000",
            "-1",
            "-0",
            "0e10",
            "-123456789012345678901234567890.5",
        ] {
            let body = format!(r#"{{"currency":{{}},"value":{value},"customer_id":1}}"#);
            let err = error(&body);
            assert!(err.contains("value must be positive"), "{value}: {err}");
        }
    }

    #[test]
    fn values_beyond_a_finite_double_are_rejected() {
        let err = error(r#"{"currency":{},"value":1e999,"customer_id":1}"#);
        assert!(err.contains("value must be finite, got 1e999"), "{err}");
        // Around f64::MAX (1.797…e308) written out in digits: 308 digits always fit, 309 may not.
        let body = |value: &str| format!(r#"{{"currency":{{}},"value":{value},"customer_id":1}}"#);
        for fits in [
            "9".repeat(308),
            format!("{}.99", "9".repeat(308)),
            format!("1{}", "0".repeat(308)),
            format!("17{}", "0".repeat(307)),
        ] {
            assert!(
                parse(body(&fits).as_bytes()).is_ok(),
                "{} digits",
                fits.len()
            );
        }
        for too_large in ["9".repeat(309), format!("18{}.5", "0".repeat(307))] {
            let err = error(&body(&too_large));
            assert!(err.contains("value must be finite"), "{err}");
        }
    }

    #[test]
    fn wrong_types_are_rejected_naming_the_problem() {
        assert!(
            error(r#"{"currency":{},"value":"12.5","customer_id":1}"#)
                .contains("value must be a JSON number, got a string")
        );
        assert!(error(r#"{"currency":{},"value":null,"customer_id":1}"#).contains("got null"));
        assert!(error(r#"{"currency":{},"value":true,"customer_id":1}"#).contains("got a boolean"));
        assert!(
            error(r#"{"currency":{},"value":1,"customer_id":"42"}"#)
                .contains("invalid type: string")
        );
        assert!(
            error(r#"{"currency":{},"value":1,"customer_id":4.2}"#)
                .contains("invalid type: floating point")
        );
        assert!(
            error(r#"[{},1,3]"#).contains(
                "expected a JSON object with currency, value and customer_id, got an array"
            )
        );
        assert!(
            error("42").contains("expected a JSON object with currency, value and customer_id")
        );
    }

    #[test]
    fn malformed_and_truncated_json_is_rejected() {
        assert!(error(r#"{"currency":{},"value":1,"#).contains("EOF while parsing"));
        assert!(error("not json").contains("invalid charge request"));
        assert!(error("").contains("EOF while parsing"));
        assert!(
            error(r#"{"currency":{},"value":NaN,"customer_id":1}"#)
                .contains("invalid charge request")
        );
        assert!(
            error(r#"{"currency":{},"value":1,"value":2,"customer_id":1}"#)
                .contains("duplicate field `value`")
        );
    }

    fn refused(body: &[u8]) -> String {
        parse(body).expect_err(&String::from_utf8_lossy(body))
    }

    /// serde_json skips `currency`, unknown fields and what nests in them without decoding their
    /// strings; the body is still checked as UTF-8 JSON text everywhere.
    #[test]
    fn bytes_that_are_not_utf8_are_refused_wherever_they_stand() {
        for (body, place) in [
            (
                &b"{\"currency\":\"\xff\xfe\",\"value\":1,\"customer_id\":1}"[..],
                "byte 0xff at line 1 column 14 (byte offset 13)",
            ),
            (
                b"{\"currency\":{},\"customer_id\":1,\"value\":263.94,\"note\":\"\xc3\x28\"}",
                "byte 0xc3 at line 1 column 55",
            ),
            (
                b"{\"currency\":{\"code\":\"\xed\xa0\x80\"},\"customer_id\":1,\"value\":1}",
                "byte 0xed at line 1 column 22",
            ),
            (
                b"{\"currency\":{\"\xff\":1},\"customer_id\":1,\"value\":1}",
                "byte 0xff at line 1 column 15",
            ),
            (
                b"{\"currency\":[\"ok\",\"\xc0\xaf\"],\"customer_id\":1,\"value\":1}",
                "byte 0xc0 at line 1 column 20",
            ),
            // A key serde_json reads: refused before too, now with the same message.
            (
                b"{\"\xfe\":1,\"currency\":{},\"customer_id\":1,\"value\":1}",
                "byte 0xfe at line 1 column 3",
            ),
        ] {
            let err = refused(body);
            assert!(
                err.starts_with("invalid charge request: invalid UTF-8") && err.contains(place),
                "{err}"
            );
        }
    }

    #[test]
    fn lone_surrogate_escapes_are_refused_wherever_they_stand() {
        for (body, place) in [
            (
                r#"{"currency":"\ud800","customer_id":1,"value":1}"#,
                "\\ud800 in a string at line 1 column 14",
            ),
            (
                r#"{"currency":{"code":"\udc00"},"customer_id":1,"value":1}"#,
                "\\udc00 in a string at line 1 column 22",
            ),
            (
                r#"{"currency":{},"customer_id":1,"value":1,"memo":["\ud83d"]}"#,
                "\\ud83d in a string at line 1 column 51",
            ),
            (
                r#"{"currency":{"\udead":1},"customer_id":1,"value":1}"#,
                "\\udead in a string at line 1 column 15",
            ),
        ] {
            let err = error(body);
            assert!(
                err.contains("lone surrogate") && err.contains(place),
                "{err}"
            );
        }
        // Keys and values serde_json reads were refused before, in its own words.
        let err = error(r#"{"\ud800":1,"currency":{},"customer_id":1,"value":1}"#);
        assert!(
            err.contains("unexpected end of hex escape at line 1 column 9"),
            "{err}"
        );
        // A pair is one character, outside the Basic Multilingual Plane.
        assert!(parse(br#"{"currency":"\ud83d\udcb6","customer_id":1,"value":1}"#).is_ok());
    }

    /// These were refused before (serde_json checks the grammar of what it skips); kept so.
    #[test]
    fn invalid_json_inside_currency_is_refused() {
        for (currency, problem) in [
            (r#"{"a"}"#, "expected `:`"),
            ("[1,]", "expected value"),
            ("01", "invalid number"),
            ("1.", "invalid number"),
            (r#""\q""#, "invalid escape"),
            ("\"a\u{1}b\"", "control character"),
            ("tru", "expected ident"),
            ("{\"a\":1", "EOF while parsing an object"),
        ] {
            let body = format!(r#"{{"currency":{currency},"customer_id":1,"value":1}}"#);
            let err = error(&body);
            assert!(err.contains(problem), "{currency}: {err}");
            assert!(err.contains("at line 1 column"), "{currency}: {err}");
        }
        // Any JSON value stays accepted, as Antaeus's `{}` is.
        for currency in [r#"{"a":1,"a":[null,true,1e999,"\u00e9"]}"#, "\"EUR\"", "[]"] {
            let body = format!(r#"{{"currency":{currency},"customer_id":1,"value":1}}"#);
            assert!(parse(body.as_bytes()).is_ok(), "{currency}");
        }
    }
}
