//! Progress of the long `hetflow bench` commands, on stderr.
//!
//! On a terminal, one line that redraws itself: a spinner, the elapsed time, a bar when the
//! number of steps is known, and the step being measured. When stderr is not a terminal
//! (a pipe, a file, CI logs) nothing redraws: each step prints one plain line,
//! `  measuring <step> ...`, so a log still shows where a run was.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of one command.
pub struct Progress {
    bar: ProgressBar,
    /// Where the bar draws once the first step starts (before it, it would show an empty
    /// step); `None` after that.
    target: std::sync::Mutex<Option<ProgressDrawTarget>>,
    /// Whether `target` draws nothing (stderr is not a terminal): then each step is a line.
    hidden: bool,
}

impl Progress {
    /// A display on stderr for the command `what` (e.g. `bench neuro`), with `total` steps
    /// when known (a bar) or an open-ended spinner.
    pub fn new(what: &str, total: Option<u64>) -> Self {
        Self::with_target(what, total, ProgressDrawTarget::stderr())
    }

    /// The same on another target (a hidden one in tests).
    pub fn with_target(what: &str, total: Option<u64>, target: ProgressDrawTarget) -> Self {
        let template = match total {
            Some(_) => "{spinner:.cyan} {prefix} [{elapsed_precise}] [{bar:20.cyan/blue}] {pos}/{len} {wide_msg}",
            None => "{spinner:.cyan} {prefix} [{elapsed_precise}] step {pos}: {wide_msg}",
        };
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        Progress {
            bar,
            hidden: target.is_hidden(),
            target: std::sync::Mutex::new(Some(target)),
        }
    }

    /// Step `name` starts (and the one before it, if any, is done).
    pub fn step(&self, name: &str) {
        let target = self.target.lock().map_or(None, |mut t| t.take());
        let first = target.is_some();
        // A bar counts the steps done; a spinner numbers the step running.
        if self.bar.length().is_none() || !first {
            self.bar.inc(1);
        }
        self.bar.set_message(name.to_string());
        if self.hidden {
            eprintln!("  measuring {name} ...");
        } else if let Some(target) = target {
            self.bar.set_draw_target(target);
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    /// Steps started so far (bar: steps done).
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// All steps done: clears the display.
    pub fn finish(&self) {
        if let Some(n) = self.bar.length() {
            self.bar.set_position(n);
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error path leaves early: do not leave a half-drawn line behind.
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_counted_when_hidden_too() {
        let bar = Progress::with_target("bench", Some(3), ProgressDrawTarget::hidden());
        bar.step("a");
        assert_eq!(bar.position(), 0, "a bar counts steps done");
        bar.step("b");
        assert_eq!(bar.position(), 1);
        bar.finish();
        assert_eq!(bar.position(), 3);
        let spinner = Progress::with_target("bench", None, ProgressDrawTarget::hidden());
        spinner.step("a");
        spinner.step("b");
        assert_eq!(spinner.position(), 2, "a spinner numbers the step running");
    }
}
