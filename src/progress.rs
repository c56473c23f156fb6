//! Progress of long stages as bars with a percentage (files read, voxels fitted, series
//! processed), as MRtrix3's commands show theirs, drawn on stderr only where the CLI turned
//! them on (a terminal, not `--quiet` or `--json`); elsewhere every call is a no-op that costs an atomic add.
//!
//! The library marks its long stages with [`bar`]; the CLI calls [`enable`] once. Bars of
//! nested stages (the files of a series inside the series of a run) are drawn one below the
//! other, and [`println`] prints a line above them without tearing them.

use std::sync::{Mutex, OnceLock};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

enum Mode {
    Draw(MultiProgress),
    /// Bars count but are not drawn; each finished one is kept for [`finished`] (tests).
    Record(Vec<(String, u64, u64)>),
}

fn mode() -> &'static Mutex<Option<Mode>> {
    static MODE: OnceLock<Mutex<Option<Mode>>> = OnceLock::new();
    MODE.get_or_init(|| Mutex::new(None))
}

/// Draws the bars of every later stage on stderr (the CLI calls it on a terminal).
pub fn enable() {
    if let Ok(mut m) = mode().lock() {
        *m = Some(Mode::Draw(MultiProgress::with_draw_target(
            ProgressDrawTarget::stderr(),
        )));
    }
}

/// Counts the bars of every later stage without drawing them, and keeps each finished one's
/// message, position and length for [`finished`]: how tests see the stages.
pub fn record() {
    if let Ok(mut m) = mode().lock() {
        *m = Some(Mode::Record(Vec::new()));
    }
}

/// The stages finished since [`record`]: (message, position, length).
pub fn finished() -> Vec<(String, u64, u64)> {
    match mode().lock().as_deref() {
        Ok(Some(Mode::Record(v))) => v.clone(),
        _ => Vec::new(),
    }
}

/// A stage of `total` steps; [`Bar::inc`] as each is done. Dropping it clears the bar.
pub struct Bar {
    bar: ProgressBar,
}

/// Starts a stage: "{message} [=====>    ]  42% (21/50)".
pub fn bar(message: &str, total: u64) -> Bar {
    let bar = match mode().lock().as_deref() {
        Ok(Some(Mode::Draw(multi))) => {
            let pb = multi.add(ProgressBar::new(total));
            pb.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {percent:>3}% ({pos}/{len})")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            pb
        }
        _ => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()),
    };
    bar.set_message(message.to_string());
    Bar { bar }
}

/// A spinner for a stage whose length is not known, drawn like the bars.
pub fn spinner(message: &str) -> ProgressBar {
    match mode().lock().as_deref() {
        Ok(Some(Mode::Draw(multi))) => {
            let pb = multi.add(ProgressBar::new_spinner());
            pb.set_message(message.to_string());
            pb.enable_steady_tick(std::time::Duration::from_millis(100));
            pb
        }
        _ => ProgressBar::hidden(),
    }
}

/// Prints `line` on stderr, above the bars when they are drawn.
pub fn println(line: &str) {
    match mode().lock().as_deref() {
        Ok(Some(Mode::Draw(multi))) => {
            let _ = multi.println(line);
        }
        _ => eprintln!("{line}"),
    }
}

impl Bar {
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// `steps` more steps done (e.g. a block of voxels); callable from many threads at once.
    pub fn inc_by(&self, steps: usize) {
        self.bar.inc(steps as u64);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Ok(Some(Mode::Record(v))) = mode().lock().as_deref_mut() {
            v.push((
                self.bar.message(),
                self.bar.position(),
                self.bar.length().unwrap_or(0),
            ));
        }
        self.bar.finish_and_clear();
    }
}
