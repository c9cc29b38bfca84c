//! All terminal output goes through the [`Printer`]: data on stdout, diagnostics and progress
//! on stderr, colour only on a terminal and never with `NO_COLOR`. The formatting of what the
//! engine returns (plans, status, drills) and of its progress events lives here too.

pub mod drill;
pub mod plan;
pub mod progress;
pub mod status;
pub mod upgrade;

use std::io::{BufRead, IsTerminal, Write};
use std::time::SystemTime;

pub use anstyle::AnsiColor;
use anstyle::Style;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone)]
pub struct Printer {
    color: bool,
    quiet: bool,
    tty: bool,
}

impl Printer {
    pub fn new(choice: ColorChoice, quiet: bool) -> Printer {
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
                    && std::env::var("TERM").map_or(true, |t| t != "dumb")
            }
        };
        Printer {
            color,
            quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Whether progress can be drawn (bars, spinners) rather than printed as plain lines.
    pub fn is_tty(&self) -> bool {
        self.tty && !self.quiet
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Plain output for tests and pipes.
    pub fn plain() -> Printer {
        Printer {
            color: false,
            quiet: false,
            tty: false,
        }
    }

    /// Data (what a pipe reads): validated files, schemas, rendered files.
    pub fn data(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
    }

    /// A progress or result line for a person, on stderr. Silent with `--quiet`.
    pub fn info(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// `label` in bold green (`ok`, `done`), then the message.
    pub fn success(&self, label: &str, text: &str) {
        if !self.quiet {
            eprintln!("{} {text}", self.paint(label, AnsiColor::Green));
        }
    }

    pub fn warn(&self, text: &str) {
        eprintln!("{} {text}", self.paint("warning:", AnsiColor::Yellow));
    }

    pub fn error(&self, text: &str) {
        eprintln!("{} {text}", self.paint("error:", AnsiColor::Red));
    }

    /// `healthy` in green or `UNHEALTHY` in red.
    pub fn verdict(&self, healthy: bool) -> String {
        if healthy {
            self.paint("healthy", AnsiColor::Green)
        } else {
            self.paint("UNHEALTHY", AnsiColor::Red)
        }
    }

    /// `s` in bold `color` on a colour terminal, plain otherwise.
    pub fn paint(&self, s: &str, color: AnsiColor) -> String {
        if self.color {
            let style = Style::new().bold().fg_color(Some(color.into()));
            format!("{style}{s}{style:#}")
        } else {
            s.to_string()
        }
    }

    /// Asks once before changing anything; refuses when nobody can answer (no terminal).
    pub fn confirm(&self, question: &str, yes: bool) -> std::io::Result<Confirmation> {
        if yes {
            return Ok(Confirmation::Yes);
        }
        if !std::io::stdin().is_terminal() {
            return Ok(Confirmation::NoTerminal);
        }
        self.info(&format!("{question} Only 'yes' is accepted: "));
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(if answer.trim() == "yes" {
            Confirmation::Yes
        } else {
            Confirmation::No
        })
    }

    /// A timestamped progress line on stderr (plain output, e.g. in CI). Silent with `--quiet`.
    pub fn log_line(&self, line: &str) {
        if !self.quiet {
            eprintln!(
                "{} {line}",
                humantime::format_rfc3339_seconds(SystemTime::now())
            );
        }
    }
}

/// What [`Printer::confirm`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    Yes,
    No,
    /// Nobody can answer: standard input is not a terminal and `--yes` was not given.
    NoTerminal,
}
