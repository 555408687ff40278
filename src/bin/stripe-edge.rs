//! `stripe-edge`: the offline developer loop. Signs example events exactly as Stripe does
//! and POSTs them to a running worker, for machines where Stripe's CLI cannot reach Stripe.
//!
//! ```text
//! stripe-edge trigger payment_intent.succeeded [--forward-to URL] [--secret whsec_...]
//! stripe-edge trigger --all
//! stripe-edge send FILE [--timestamp T]     sign a file's bytes unchanged and POST them
//! stripe-edge sign FILE [--timestamp T]     print the Stripe-Signature header for a file
//! stripe-edge events                        list the example events
//! ```

use std::process::ExitCode;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() -> ExitCode {
    ExitCode::FAILURE
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use super::*;
    use std::path::Path;
    use stripe_edge::offline::fixtures::{self, FIXTURES};
    use stripe_edge::offline::http::HttpResponse;
    use stripe_edge::offline::trigger::{
        now_seconds, resolve_secret, send_signed, trigger, DEFAULT_FORWARD_TO,
    };
    use stripe_edge::signature::SigningSecret;

    const USAGE: &str = "usage:
  stripe-edge trigger EVENT_TYPE... [--forward-to URL] [--secret whsec_...]
  stripe-edge trigger --all [--forward-to URL] [--secret whsec_...]
  stripe-edge send FILE [--forward-to URL] [--secret whsec_...] [--timestamp UNIX_SECONDS]
  stripe-edge sign FILE [--secret whsec_...] [--timestamp UNIX_SECONDS]
  stripe-edge events

The secret comes from --secret, else $STRIPE_WEBHOOK_SECRET, else ./.dev.vars.
--forward-to defaults to http://127.0.0.1:8787/webhook.";

    struct Args {
        command: String,
        positional: Vec<String>,
        forward_to: String,
        secret: Option<String>,
        timestamp: Option<i64>,
        all: bool,
    }

    fn parse(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
        let command = raw.next().ok_or("no command")?;
        if matches!(command.as_str(), "help" | "-h" | "--help") {
            return Err(String::new());
        }
        let mut args = Args {
            command,
            positional: Vec::new(),
            forward_to: DEFAULT_FORWARD_TO.to_owned(),
            secret: None,
            timestamp: None,
            all: false,
        };
        while let Some(arg) = raw.next() {
            let mut value = |name: &str| raw.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--forward-to" => args.forward_to = value("--forward-to")?,
                "--secret" => args.secret = Some(value("--secret")?),
                "--timestamp" => {
                    let text = value("--timestamp")?;
                    args.timestamp =
                        Some(text.parse().map_err(|_| "--timestamp takes unix seconds")?);
                }
                "--all" => args.all = true,
                "-h" | "--help" => return Err(String::new()),
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                _ => args.positional.push(arg),
            }
        }
        Ok(args)
    }

    pub fn main() -> ExitCode {
        let args = match parse(std::env::args().skip(1)) {
            Ok(args) => args,
            // Asked for help: usage on stdout, success.
            Err(problem) if problem.is_empty() => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(problem) => {
                eprintln!("stripe-edge: {problem}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        let result = match args.command.as_str() {
            "events" => {
                for fixture in FIXTURES {
                    let note = if fixture.routed_by_default {
                        ""
                    } else {
                        "  (not in the default routes)"
                    };
                    println!("{}{note}", fixture.event_type);
                }
                Ok(true)
            }
            "trigger" => run_trigger(&args),
            "send" => run_send(&args),
            "sign" => run_sign(&args),
            other => Err(format!("unknown command {other:?}\n{USAGE}")),
        };
        match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(problem) => {
                eprintln!("stripe-edge: {problem}");
                ExitCode::from(2)
            }
        }
    }

    fn secret(args: &Args) -> Result<SigningSecret, String> {
        resolve_secret(args.secret.clone(), Path::new(".dev.vars"))
    }

    fn run_trigger(args: &Args) -> Result<bool, String> {
        let chosen: Vec<&fixtures::Fixture> = if args.all {
            FIXTURES.iter().filter(|f| f.routed_by_default).collect()
        } else if args.positional.is_empty() {
            return Err("name an event type, or pass --all (see `stripe-edge events`)".into());
        } else {
            args.positional
                .iter()
                .map(|name| {
                    fixtures::find(name).ok_or_else(|| {
                        format!("no example event for {name:?} (see `stripe-edge events`)")
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let secret = secret(args)?;
        let mut all_ok = true;
        for fixture in chosen {
            println!("--> {} ", fixture.event_type);
            match trigger(&args.forward_to, &secret, fixture) {
                Ok(sent) => all_ok &= report(&args.forward_to, &sent.event_id, &sent.response),
                Err(error) => {
                    println!("<-- [failed] POST {}: {error}", args.forward_to);
                    all_ok = false;
                }
            }
        }
        Ok(all_ok)
    }

    fn read_file(args: &Args) -> Result<Vec<u8>, String> {
        let [path] = args.positional.as_slice() else {
            return Err("name exactly one file".into());
        };
        std::fs::read(path).map_err(|error| format!("cannot read {path}: {error}"))
    }

    fn run_send(args: &Args) -> Result<bool, String> {
        let body = read_file(args)?;
        let secret = secret(args)?;
        let timestamp = args.timestamp.unwrap_or_else(now_seconds);
        match send_signed(&args.forward_to, &secret, timestamp, &body) {
            Ok(response) => Ok(report(&args.forward_to, "file", &response)),
            Err(error) => {
                println!("<-- [failed] POST {}: {error}", args.forward_to);
                Ok(false)
            }
        }
    }

    fn run_sign(args: &Args) -> Result<bool, String> {
        let body = read_file(args)?;
        let timestamp = args.timestamp.unwrap_or_else(now_seconds);
        println!("{}", secret(args)?.sign_header(timestamp, &body));
        Ok(true)
    }

    fn report(url: &str, id: &str, response: &HttpResponse) -> bool {
        println!(
            "<-- [{}] POST {url} [{id}] {}",
            response.status,
            response.body_text().trim()
        );
        (200..300).contains(&response.status)
    }
}
