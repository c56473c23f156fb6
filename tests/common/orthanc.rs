//! A real Orthanc for the networking tests: Debian's `orthanc` with its DICOMweb plugin
//! (`orthanc-dicomweb`), started on free loopback ports with its storage in a temporary
//! folder, queried through its REST API, killed on drop. Missing packages fail the test with
//! the line that installs them; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL: &str = "sudo apt-get install -y orthanc orthanc-dicomweb";
pub const AET: &str = "ORTHANC";

pub struct Orthanc {
    child: Child,
    pub http_port: u16,
    pub dicom_port: u16,
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// A TCP port free on the loopback interface now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn orthanc_binary() -> PathBuf {
    let candidates = [
        Path::new("/usr/sbin/Orthanc"),
        Path::new("/usr/bin/Orthanc"),
    ];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.to_path_buf(),
        None => panic!(
            "this test needs Orthanc (/usr/sbin/Orthanc, Debian package `orthanc`) and did not find it; install it with: {INSTALL}"
        ),
    }
}

fn dicomweb_plugin() -> PathBuf {
    for dir in ["/usr/share/orthanc/plugins", "/usr/lib/orthanc"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("OrthancDicomWeb.so"))
            })
            .collect();
        found.sort();
        if let Some(p) = found.into_iter().next() {
            return p;
        }
    }
    panic!(
        "this test needs Orthanc's DICOMweb plugin (libOrthancDicomWeb.so under /usr/share/orthanc/plugins, Debian package `orthanc-dicomweb`) and did not find it; install it with: {INSTALL}"
    )
}

impl Orthanc {
    /// Starts Orthanc; `modalities` are (name, AET, port) of DICOM nodes on 127.0.0.1 that
    /// Orthanc may talk to.
    pub fn start(modalities: &[(&str, &str, u16)]) -> Orthanc {
        let binary = orthanc_binary();
        let plugin = dicomweb_plugin();
        let dir = tempfile::tempdir().expect("a temporary folder");
        let http_port = free_port();
        let dicom_port = free_port();
        let mut mods = serde_json::Map::new();
        for (name, aet, port) in modalities {
            mods.insert(
                name.to_string(),
                serde_json::json!([aet, "127.0.0.1", port]),
            );
        }
        let config = serde_json::json!({
            "Name": "paramap-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": AET,
            "HttpServerEnabled": true,
            "DicomServerEnabled": true,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "UnknownSopClassAccepted": true,
            "StorageCompression": false,
            "DicomModalities": mods,
            "Plugins": [plugin],
            "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
        });
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new(&binary)
            .arg(&config_path)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", binary.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut orthanc = Orthanc {
            child,
            http_port,
            dicom_port,
            dir,
            agent,
        };
        orthanc.wait_ready();
        orthanc
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Orthanc exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if let Ok(r) = self.agent.get(&self.url("/system")).call() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("Orthanc did not answer /system; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// `AET@127.0.0.1:PORT` for `--send`.
    pub fn destination(&self) -> String {
        format!("{AET}@127.0.0.1:{}", self.dicom_port)
    }

    /// The DICOMweb root for `--stowrs`.
    pub fn dicomweb(&self) -> String {
        self.url("/dicom-web")
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let mut r = self
            .agent
            .get(&self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let text = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Orthanc's id of the study with this StudyInstanceUID, if it holds it.
    pub fn study_id(&self, study_uid: &str) -> Option<String> {
        let mut r = self
            .agent
            .post(&self.url("/tools/lookup"))
            .send(study_uid)
            .expect("POST /tools/lookup");
        let found: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        found
            .as_array()?
            .iter()
            .find(|e| e["Type"] == "Study")
            .map(|e| e["ID"].as_str().unwrap().to_string())
    }

    /// The series under a study: (SeriesInstanceUID, Orthanc ids of its instances).
    pub fn series_of_study(&self, study_uid: &str) -> Vec<(String, Vec<String>)> {
        let Some(id) = self.study_id(study_uid) else {
            return vec![];
        };
        let series = self.get_json(&format!("/studies/{id}/series"));
        series
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["MainDicomTags"]["SeriesInstanceUID"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    s["Instances"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    }

    /// Orthanc's rendering of an instance (`/instances/{id}/preview`): HTTP status and body.
    pub fn preview(&self, instance_id: &str) -> (u16, Vec<u8>) {
        let path = format!("/instances/{instance_id}/preview");
        let mut r = self
            .agent
            .get(&self.url(&path))
            .header("Accept", "image/png")
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_vec().unwrap_or_default())
    }

    /// The Part 10 file Orthanc stored for an instance.
    pub fn instance_file(&self, instance_id: &str) -> Vec<u8> {
        let mut r = self
            .agent
            .get(&self.url(&format!("/instances/{instance_id}/file")))
            .call()
            .expect("GET the instance file");
        assert_eq!(r.status().as_u16(), 200);
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap()
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
