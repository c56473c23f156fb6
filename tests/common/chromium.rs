//! Headless Chromium for the report tests: a page's screenshot and its console messages.

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Decoded RGB image (grey PNGs are expanded to RGB).
pub struct Image {
    pub w: usize,
    pub h: usize,
    pub rgb: Vec<u8>,
}

impl Image {
    pub fn at(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.w + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

pub fn decode(png_bytes: &[u8]) -> Image {
    let mut r = png::Decoder::new(Cursor::new(png_bytes))
        .read_info()
        .expect("a valid PNG");
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let rgb = buf
        .chunks_exact(channels)
        .flat_map(|p| {
            if channels == 1 {
                [p[0]; 3]
            } else {
                [p[0], p[1], p[2]]
            }
        })
        .collect();
    Image {
        w: info.width as usize,
        h: info.height as usize,
        rgb,
    }
}

/// What headless Chromium made of a page: the screenshot and its console messages.
pub struct Shown {
    pub screenshot: Image,
    pub console: Vec<String>,
}

const HOW_TO_INSTALL_CHROMIUM: &str =
    "this test needs Debian's headless Chromium: install it with `apt-get install -y chromium fonts-dejavu-core`";

pub fn show_in_chromium(html: &Path) -> Shown {
    show_in_chromium_sized(html, 1200, 2000)
}

/// [`show_in_chromium`] in a window of `width`×`height` CSS pixels (scale 1).
pub fn show_in_chromium_sized(html: &Path, width: usize, height: usize) -> Shown {
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let profile = dir.path().join("profile");
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}); {HOW_TO_INSTALL_CHROMIUM}"));
    // A guard against a hung browser, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && shot.exists(),
        "chromium failed ({}):\n{log}",
        out.status
    );
    // Console messages (errors, refused loads under the page's Content-Security-Policy) and
    // network failures; Chromium's own complaints about D-Bus in a container are not the page's.
    let console = log
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE") || l.contains("net::ERR") || l.contains("Failed to load")
        })
        .map(str::to_string)
        .collect();
    Shown {
        screenshot: decode(&std::fs::read(&shot).unwrap()),
        console,
    }
}
