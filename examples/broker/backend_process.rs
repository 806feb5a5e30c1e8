//! The backend itself: what runs in each child process the broker spawns.
//!
//! The broker re-executes its own binary as `broker --backend NAME --crash-rate P --seed S`.
//! The child reads one request per line on stdin and answers one line on stdout, in order:
//!
//! ```text
//! HELLO <id>   ->   OK <id> <pid>
//! ```
//!
//! With probability `P` a Hello kills it instead (exit status 101, as a panicking Rust program
//! would): the request is never answered, and neither are any queued behind it. When its stdin
//! closes, because the broker stopped or died, it exits quietly: a backend never outlives its
//! broker.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use crate::options::BackendOptions;

/// The exit status of a simulated crash.
const CRASH_EXIT_STATUS: i32 = 101;

/// Serves Hellos until stdin closes or a draw says crash.
pub(crate) fn run(options: BackendOptions) -> ExitCode {
    let pid = std::process::id();
    // Seeded: each incarnation draws its own crash sequence.
    let mut draws = fastrand::Rng::with_seed(options.seed);
    let mut answers = io::stdout().lock();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("HELLO"), Some(id)) => {
                // Always for a rate of 1, never for 0: the draw is in [0, 1).
                if draws.f64() < options.crash_rate {
                    // Answers already written are flushed (stdout is line-buffered); this one
                    // and any queued behind it are lost, as in a real crash.
                    std::process::exit(CRASH_EXIT_STATUS);
                }
                format!("OK {id} {pid}\n")
            }
            _ => format!("ERR {} cannot parse `{line}`\n", options.name),
        };
        if answers
            .write_all(answer.as_bytes())
            .and_then(|()| answers.flush())
            .is_err()
        {
            // The broker is gone.
            break;
        }
    }
    ExitCode::SUCCESS
}
