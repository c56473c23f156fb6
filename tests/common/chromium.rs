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

/// Where a page's layout lands in headless Chromium in a `width`×`height` window (CSS px).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    /// `document.documentElement.scrollWidth`: wider than the window means a horizontal scroll.
    pub scroll_width: f64,
    pub inner_width: f64,
    pub inner_height: f64,
    /// Top and bottom of the first `table.keynumbers` and of its first data row (the first
    /// ROI's numbers), in px from the top of the page; NaN where there is none.
    pub key_top: Option<f64>,
    pub key_bottom: Option<f64>,
    pub first_row_bottom: Option<f64>,
    /// Elements whose right edge passes the window's (tag.class), at most ten.
    pub overflowing: Vec<String>,
}

/// Measures `html`'s layout ([`Layout`]) in headless Chromium, with every `<details>` open (as
/// a reader who unfolds them sees it). The page forbids scripts by its
/// Content-Security-Policy; a copy without that policy, with a measuring script run at the
/// load event (images laid out), is opened and its DOM read back (`--dump-dom`).
pub fn layout_in_chromium(html: &Path, width: usize, height: usize) -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let page = std::fs::read_to_string(html).unwrap();
    let policy = page
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .map(|a| a..a + page[a..].find('>').unwrap() + 1);
    let mut page = match policy {
        Some(r) => format!("{}{}", &page[..r.start], &page[r.end..]),
        None => page,
    };
    let script = r#"<script>
window.addEventListener('load', () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const k = document.querySelector('table.keynumbers');
  const box = e => e ? e.getBoundingClientRect() : {top: NaN, bottom: NaN};
  const rows = k ? k.querySelectorAll('tr') : [];
  const first = [...rows].find(r => r.querySelector('td'));
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
    .map(e => e.tagName.toLowerCase() + "." + e.className + " in " + (e.closest("details,figure,section,div") || {}).tagName + " right " + Math.round(e.getBoundingClientRect().right) + " open " + ((e.closest("details") || {}).open)).slice(0, 10);
  const out = {scrollWidth: document.documentElement.scrollWidth, innerWidth, innerHeight,
    keyTop: box(k).top + scrollY, keyBottom: box(k).bottom + scrollY,
    firstRowBottom: box(first).bottom + scrollY, overflowing: wide};
  const pre = document.createElement('pre');
  pre.id = 'paramap-layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"#;
    let at = page.rfind("</body>").unwrap_or(page.len());
    page.insert_str(at, script);
    let copy = dir.path().join("page.html");
    std::fs::write(&copy, page).unwrap();
    let profile = dir.path().join("profile");
    let runtime = dir.path().join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--dump-dom",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", copy.display()))
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap_or_else(|e| panic!("cannot start chromium ({e}); {HOW_TO_INSTALL_CHROMIUM}"));
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom.find("<pre id=\"paramap-layout\">").unwrap_or_else(|| {
        panic!(
            "no layout measured: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    }) + "<pre id=\"paramap-layout\">".len();
    let json = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    let json = json.replace("&quot;", "\"").replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}
