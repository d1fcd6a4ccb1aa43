//! `payment-provider charge`: the smoke-test client the distroless image carries instead of a
//! shell and curl. It sends stock Antaeus's request (or the one the flags say), prints one JSON
//! line per request, and succeeds only if every answer is what Antaeus can read: `200` with a JSON
//! boolean `result`.

pub mod args;
mod send;

pub use args::{Args, Parsed, USAGE};

use send::{Sender, Sent};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// Runs the subcommand on the arguments after `charge`.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match args::parse(argv, |name| std::env::var(name).ok()) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("payment-provider charge: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("payment-provider charge: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, &mut std::io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("payment-provider charge: POST {}: {message}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// One request's line on stdout.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    ms: f64,
}

/// Sends `args.count` charges, one line each into `out`; the error is the failure line's cause.
pub async fn run(args: &Args, out: &mut impl Write) -> Result<(), String> {
    let sender = Sender::new();
    let mut failures = 0;
    let mut first_failure = None;
    for n in 1..=args.count {
        if n > 1 {
            tokio::time::sleep(args.interval).await;
        }
        let started = Instant::now();
        let sent = sender.send(args).await;
        let ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let (line, verdict) = match &sent {
            Sent::Answered { status, body } => {
                let text = String::from_utf8_lossy(body);
                let line = serde_json::to_string(&Line {
                    status: Some(status.as_u16()),
                    body: Some(&text),
                    error: None,
                    ms,
                });
                (line, judge(*status, body))
            }
            Sent::Failed(cause) => {
                let line = serde_json::to_string(&Line {
                    status: None,
                    body: None,
                    error: Some(cause),
                    ms,
                });
                (line, Err(cause.clone()))
            }
        };
        let line = line.expect("a line of strings and numbers serialises");
        writeln!(out, "{line}").map_err(|e| format!("cannot write to stdout: {e}"))?;
        if let Err(cause) = verdict {
            failures += 1;
            first_failure.get_or_insert((n, cause));
        }
    }
    match first_failure {
        None => Ok(()),
        Some((_, cause)) if args.count == 1 => Err(cause),
        Some((n, cause)) => Err(format!(
            "{failures} of {} charges failed; the first, #{n}: {cause}",
            args.count
        )),
    }
}

/// Whether Antaeus could read the answer: `200` and a JSON object with a boolean `result`.
fn judge(status: hyper::StatusCode, body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        result: serde_json::Value,
    }
    let shown = || {
        // One line whatever the body holds, and not all of a large one.
        let text = String::from_utf8_lossy(body);
        let mut shown: String = text
            .chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.chars().nth(200).is_some() {
            shown.push('…');
        }
        shown
    };
    if status != hyper::StatusCode::OK {
        return Err(format!("answered {status}: {}", shown()));
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer {
            result: serde_json::Value::Bool(_),
        }) => Ok(()),
        _ => Err(format!(
            "answered 200 without a JSON boolean \"result\": {}",
            shown()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    #[test]
    fn only_200_with_a_boolean_result_is_a_success() {
        assert_eq!(judge(StatusCode::OK, br#"{"result":true}"#), Ok(()));
        assert_eq!(judge(StatusCode::OK, br#"{"result":false,"x":1}"#), Ok(()));
        for (status, body, problem) in [
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                &br#"{"result":true}"#[..],
                "answered 500 Internal Server Error: {\"result\":true}",
            ),
            (
                StatusCode::OK,
                b"ok",
                "without a JSON boolean \"result\": ok",
            ),
            (
                StatusCode::OK,
                br#"{"result":"true"}"#,
                "without a JSON boolean",
            ),
            (StatusCode::OK, b"{}", "without a JSON boolean"),
            (
                StatusCode::BAD_REQUEST,
                b"line one\nline two",
                "line one line two",
            ),
        ] {
            let err = judge(status, body).unwrap_err();
            assert!(err.contains(problem), "{err}");
        }
    }

    #[test]
    fn a_large_body_is_cut_short_in_the_error() {
        let body = "x".repeat(10_000);
        let err = judge(StatusCode::BAD_GATEWAY, body.as_bytes()).unwrap_err();
        assert!(err.len() < 300 && err.ends_with('…'), "{err}");
    }
}
