//! The `charge` subcommand's arguments: lexed by `clap_lex` (clap's own argument lexer, a few
//! kilobytes in the static binary where clap's parser and help would be hundreds), checked here
//! with one-line errors.

use crate::charge::ANTAEUS_BODY;
use crate::config::parse_duration;
use bytes::Bytes;
use hyper::Uri;
use hyper::header::HeaderValue;
use std::ffi::OsString;
use std::time::Duration;

/// Where Antaeus reads its provider's URL from, and its default.
pub const ENDPOINT_VAR: &str = "PAYMENT_PROVIDER_ENDPOINT";
pub const DEFAULT_ENDPOINT: &str = "http://localhost:9000";

pub const USAGE: &str = "\
payment-provider charge: sends charges to a payment provider as stock Antaeus does, and checks
each answer is 200 with a JSON boolean \"result\" (a smoke test: the image has no shell or curl)

usage: payment-provider charge [URL] [options]

  URL                    where to POST (default: $PAYMENT_PROVIDER_ENDPOINT, else
                         http://localhost:9000, as Antaeus); host names are resolved
                         through /etc/hosts and /etc/resolv.conf
  --body JSON            the request body (default: stock Antaeus's
                         {\"currency\":{},\"customer_id\":1,\"value\":263.94})
  --idempotency-key KEY  send Idempotency-Key: KEY
  --timeout D            time each request may take, connecting included (default 5s)
  --count N              requests to send one after another, each on a new connection
                         (default 1)
  --interval D           pause between requests (default 0s)
  --slow-body D          send half the body, wait D, then the rest: a request provably in
                         flight, e.g. across a SIGTERM (must be shorter than --timeout)
  -h, --help             this text

The request: POST, Content-Type: application/json, Accept: */*, the body with its
Content-Length. Each request prints one JSON line on stdout,
{\"status\":200,\"body\":\"{\\\"result\\\":true}\",\"ms\":1.2}, or {\"error\":\"...\",\"ms\":...} without an answer.
Exit status: 0 when every answer is 200 with a JSON boolean \"result\"; 1 otherwise, with one
line on stderr naming the URL and the cause; 2 for bad arguments.
Durations are written like 500ms, 10s or 2m.
";

/// What to send, and how often.
#[derive(Debug, Clone)]
pub struct Args {
    pub url: Uri,
    pub body: Bytes,
    pub idempotency_key: Option<HeaderValue>,
    pub timeout: Duration,
    pub count: u32,
    pub interval: Duration,
    pub slow_body: Option<Duration>,
}

/// A command line: run, or print the usage.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Args>),
    Help,
}

/// Reads the arguments after `charge`; `env` looks up [`ENDPOINT_VAR`].
pub fn parse(
    argv: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, String> {
    let raw = clap_lex::RawArgs::new(argv);
    let mut cursor = raw.cursor();
    let mut url: Option<String> = None;
    let mut args = Args {
        url: Uri::from_static(DEFAULT_ENDPOINT),
        body: Bytes::from_static(ANTAEUS_BODY.as_bytes()),
        idempotency_key: None,
        timeout: Duration::from_secs(5),
        count: 1,
        interval: Duration::ZERO,
        slow_body: None,
    };
    let mut only_positional = false;
    while let Some(arg) = raw.next(&mut cursor) {
        let long = if only_positional { None } else { arg.to_long() };
        if let Some((name, inline)) = long {
            let name = name.map_err(|name| format!("unknown flag {name:?} (see --help)"))?;
            let mut value = || -> Result<String, String> {
                let value = inline
                    .or_else(|| raw.next_os(&mut cursor))
                    .ok_or_else(|| format!("--{name} needs a value (see --help)"))?;
                value
                    .to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("--{name} {value:?} is not UTF-8"))
            };
            match name {
                "help" => return Ok(Parsed::Help),
                "body" => args.body = Bytes::from(value()?),
                "idempotency-key" => {
                    let key = value()?;
                    args.idempotency_key = Some(
                        HeaderValue::from_str(&key)
                            .ok()
                            .filter(|_| !key.is_empty())
                            .ok_or_else(|| {
                                format!("--idempotency-key {key:?} is not a header value")
                            })?,
                    );
                }
                "timeout" => args.timeout = duration(name, &value()?, false)?,
                "count" => {
                    let count = value()?;
                    args.count = count.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                        format!("--count {count:?} is invalid: expected a whole number from 1")
                    })?;
                }
                "interval" => args.interval = duration(name, &value()?, true)?,
                "slow-body" => args.slow_body = Some(duration(name, &value()?, false)?),
                _ => return Err(format!("unknown flag --{name} (see --help)")),
            }
        } else if !only_positional && arg.is_escape() {
            only_positional = true;
        } else if let Some(mut shorts) = arg.to_short().filter(|_| !only_positional) {
            return match shorts.next_flag() {
                Some(Ok('h')) => Ok(Parsed::Help),
                _ => Err(format!("unknown flag {:?} (see --help)", arg.to_value_os())),
            };
        } else if url.is_some() {
            return Err(format!(
                "unexpected argument {:?}: give one URL (see --help)",
                arg.to_value_os()
            ));
        } else {
            let text = arg
                .to_value()
                .map_err(|text| format!("URL {text:?} is not UTF-8"))?;
            url = Some(text.to_owned());
        }
    }
    args.url = match url {
        Some(url) => http_url(&url).map_err(|why| format!("URL {url:?} {why}"))?,
        None => match env(ENDPOINT_VAR).filter(|url| !url.is_empty()) {
            Some(url) => http_url(&url).map_err(|why| format!("{ENDPOINT_VAR}={url:?} {why}"))?,
            None => Uri::from_static(DEFAULT_ENDPOINT),
        },
    };
    if args.slow_body.is_some_and(|pause| pause >= args.timeout) {
        return Err(format!(
            "--slow-body must be shorter than --timeout ({:?}), or the request times out in its pause",
            args.timeout
        ));
    }
    Ok(Parsed::Run(Box::new(args)))
}

fn duration(flag: &str, text: &str, zero_ok: bool) -> Result<Duration, String> {
    match parse_duration(text) {
        Ok(d) if zero_ok || !d.is_zero() => Ok(d),
        Ok(_) => Err(format!(
            "--{flag} {text:?} is invalid: must be longer than zero"
        )),
        Err(why) => Err(format!("--{flag} {text:?} is invalid: {why}")),
    }
}

/// An `http://host[:port][/path]` URL; the reason it is not one otherwise.
fn http_url(text: &str) -> Result<Uri, &'static str> {
    let uri: Uri = text
        .parse()
        .map_err(|_| "is not a URL: expected http://host[:port][/path]")?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(uri),
        Some("https") => Err("is https: the client speaks plain HTTP, as the provider serves it"),
        _ => Err("is not an http:// URL: expected http://host[:port][/path]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(argv: &[&str], endpoint: Option<&str>) -> Result<Args, String> {
        let env = |name: &str| (name == ENDPOINT_VAR).then(|| endpoint.map(str::to_owned))?;
        match parse(argv.iter().map(OsString::from), env)? {
            Parsed::Run(args) => Ok(*args),
            Parsed::Help => Err("help".to_owned()),
        }
    }

    #[test]
    fn the_defaults_are_stock_antaeus_request_to_its_default_endpoint() {
        let args = parsed(&[], None).unwrap();
        assert_eq!(args.url, "http://localhost:9000/");
        assert_eq!(args.body, ANTAEUS_BODY.as_bytes());
        assert_eq!(args.timeout, Duration::from_secs(5));
        assert_eq!((args.count, args.interval), (1, Duration::ZERO));
        assert!(args.idempotency_key.is_none() && args.slow_body.is_none());
    }

    #[test]
    fn the_url_comes_from_the_argument_then_the_antaeus_variable() {
        let from_env = parsed(
            &[],
            Some("http://payment-provider.payment-provider:9000/v1/charges"),
        );
        assert_eq!(
            from_env.unwrap().url,
            "http://payment-provider.payment-provider:9000/v1/charges"
        );
        let given = parsed(&["http://127.0.0.1:1/v1/charges"], Some("http://elsewhere"));
        assert_eq!(given.unwrap().url, "http://127.0.0.1:1/v1/charges");
        assert_eq!(parsed(&[], Some("")).unwrap().url, "http://localhost:9000/");
    }

    #[test]
    fn every_flag_is_read_in_both_spellings() {
        let args = parsed(
            &[
                "--body",
                "{}",
                "--idempotency-key=invoice-7",
                "--timeout",
                "2s",
                "--count=3",
                "--interval",
                "100ms",
                "--slow-body=1s",
                "http://h:1/",
            ],
            None,
        )
        .unwrap();
        assert_eq!(args.body, "{}");
        assert_eq!(args.idempotency_key.unwrap(), "invoice-7");
        assert_eq!(args.timeout, Duration::from_secs(2));
        assert_eq!(args.count, 3);
        assert_eq!(args.interval, Duration::from_millis(100));
        assert_eq!(args.slow_body, Some(Duration::from_secs(1)));
        assert_eq!(args.url, "http://h:1/");
    }

    #[test]
    fn help_is_asked_for_with_either_flag() {
        for flag in ["-h", "--help"] {
            assert_eq!(parsed(&[flag], None).unwrap_err(), "help");
        }
    }

    #[test]
    fn bad_arguments_are_one_line_naming_the_problem() {
        for (argv, endpoint, problem) in [
            (&["--bogus"][..], None, "unknown flag --bogus"),
            (&["-x"], None, "unknown flag \"-x\""),
            (&["--timeout"], None, "--timeout needs a value"),
            (
                &["--timeout", "0s"],
                None,
                "--timeout \"0s\" is invalid: must be longer",
            ),
            (
                &["--interval", "soon"],
                None,
                "--interval \"soon\" is invalid: expected a duration",
            ),
            (&["--count", "0"], None, "--count \"0\" is invalid"),
            (
                &["--idempotency-key", ""],
                None,
                "--idempotency-key \"\" is not a header value",
            ),
            (
                &["http://a", "http://b"],
                None,
                "unexpected argument \"http://b\"",
            ),
            (
                &["localhost:9000"],
                None,
                "URL \"localhost:9000\" is not an http:// URL",
            ),
            (&["https://p"], None, "URL \"https://p\" is https"),
            (&["http://a b"], None, "is not a URL"),
            (
                &[],
                Some("ftp://p"),
                "PAYMENT_PROVIDER_ENDPOINT=\"ftp://p\" is not an http:// URL",
            ),
            (
                &["--slow-body", "5s"],
                None,
                "--slow-body must be shorter than --timeout (5s)",
            ),
        ] {
            let err = parsed(argv, endpoint).unwrap_err();
            assert!(err.contains(problem), "{argv:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn after_a_double_dash_everything_is_the_url() {
        let args = parsed(&["--", "http://h:1/"], None).unwrap();
        assert_eq!(args.url, "http://h:1/");
        assert!(
            parsed(&["--", "--help"], None)
                .unwrap_err()
                .contains("is not an http:// URL")
        );
    }
}
