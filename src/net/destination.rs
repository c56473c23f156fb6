//! Where results go: a DICOM node given as `AET@HOST:PORT` (C-STORE) or a DICOMweb root URL
//! (STOW-RS). Parsed up front so that a typo fails the command before any computing is done,
//! not hours later when an unattended run tries to send.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A DICOM application entity reachable over TCP: the called AE title, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub aet: String,
    pub host: String,
    pub port: u16,
}

const HOW: &str = "give it as AET@HOST:PORT, e.g. PACS@10.0.0.5:104 or ORTHANC@[::1]:4242";

impl FromStr for Destination {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |problem: String| Error::Destination {
            given: s.to_string(),
            problem: format!("{problem}; {HOW}"),
        };
        let Some((aet, address)) = s.split_once('@') else {
            return Err(bad("no '@' between the AE title and the host".into()));
        };
        let aet = check_ae_title(aet).map_err(bad)?;
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err(bad("no ':PORT' after the host".into()));
        };
        let host = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing ']'".into()))?,
            None if host.contains(':') => {
                return Err(bad("write an IPv6 address in brackets, [::1]".into()))
            }
            None => host,
        };
        if host.is_empty() {
            return Err(bad("the host is empty".into()));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(bad(format!("'{host}' is not a host name or address")));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(bad(format!("'{port}' is not a TCP port (1 to 65535)"))),
        };
        Ok(Destination {
            aet,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.aet, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.aet, self.host, self.port)
        }
    }
}

/// An AE title as PS3.5 §6.2 (VR AE) allows it: at most 16 characters of the default
/// repertoire without backslash or control characters; leading and trailing spaces are not
/// significant, and an all-space title is not a title.
pub fn check_ae_title(aet: &str) -> std::result::Result<String, String> {
    let trimmed = aet.trim_matches(' ');
    if trimmed.is_empty() {
        return Err("the AE title is empty".into());
    }
    if trimmed.len() > 16 {
        return Err(format!(
            "the AE title '{trimmed}' is {} characters long; DICOM allows 16 (PS3.5 §6.2)",
            trimmed.len()
        ));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '\\')
    {
        return Err(format!(
            "the AE title '{trimmed}' holds {c:?}, which an AE title may not (PS3.5 §6.2)"
        ));
    }
    Ok(trimmed.to_string())
}

/// Checks a STOW-RS root URL (the DICOMweb base, e.g. `http://pacs:8042/dicom-web`) and returns
/// it without a trailing slash. A URL already ending in `/studies` is taken as the base's
/// `/studies` resource: [`stowrs_endpoint`] does not append it twice.
pub fn check_stowrs_url(url: &str) -> Result<String> {
    let bad = |problem: &str| Error::Destination {
        given: url.to_string(),
        problem: format!(
            "{problem}; give the DICOMweb root URL, e.g. http://pacs.example:8042/dicom-web"
        ),
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| bad("a STOW-RS URL starts with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err(bad(
            "the URL holds a query, a fragment or a space, which a STOW-RS root does not",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The STOW-RS Store Instances resource (PS3.18 §10.5): `{root}/studies`, or
/// `{root}/studies/{StudyInstanceUID}` when every instance belongs to that study (the origin
/// server then refuses instances of another study instead of filing them).
pub fn stowrs_endpoint(root: &str, study_uid: Option<&str>) -> Result<String> {
    let root = check_stowrs_url(root)?;
    let studies = if root.ends_with("/studies") {
        root
    } else {
        format!("{root}/studies")
    };
    Ok(match study_uid {
        Some(uid) => format!("{studies}/{uid}"),
        None => studies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aet_host_port_is_parsed_and_printed_back() {
        let d: Destination = "PACS@10.0.0.5:104".parse().unwrap();
        assert_eq!(
            d,
            Destination {
                aet: "PACS".into(),
                host: "10.0.0.5".into(),
                port: 104
            }
        );
        assert_eq!(d.to_string(), "PACS@10.0.0.5:104");
        let v6: Destination = "ORTHANC@[::1]:4242".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "ORTHANC@[::1]:4242");
        let named: Destination = "MY_AE 1@pacs.hospital.org:11112".parse().unwrap();
        assert_eq!(named.aet, "MY_AE 1");
    }

    #[test]
    fn malformed_destinations_say_what_is_wrong_and_how_to_write_it() {
        for (given, says) in [
            ("pacs.example:104", "no '@'"),
            ("PACS@pacs.example", "no ':PORT'"),
            ("PACS@pacs.example:0", "not a TCP port"),
            ("PACS@pacs.example:70000", "not a TCP port"),
            ("PACS@:104", "host is empty"),
            ("@host:104", "AE title is empty"),
            ("A_TITLE_LONGER_THAN_16@host:104", "DICOM allows 16"),
            ("PA\\CS@host:104", "may not"),
            ("PACS@::1:104", "brackets"),
        ] {
            let e = given.parse::<Destination>().unwrap_err().to_string();
            assert!(e.contains(says), "{given}: {e}");
            assert!(e.contains("AET@HOST:PORT"), "{given}: {e}");
        }
    }

    #[test]
    fn stowrs_endpoint_is_the_studies_resource_of_the_root() {
        assert_eq!(
            stowrs_endpoint("http://h:8042/dicom-web/", None).unwrap(),
            "http://h:8042/dicom-web/studies"
        );
        assert_eq!(
            stowrs_endpoint("https://h/dicom-web/studies", Some("1.2.3")).unwrap(),
            "https://h/dicom-web/studies/1.2.3"
        );
        for bad in [
            "ftp://h/x",
            "http:///x",
            "h:8042/dicom-web",
            "http://h/x?y=1",
        ] {
            let e = stowrs_endpoint(bad, None).unwrap_err().to_string();
            assert!(e.contains("DICOMweb root URL"), "{bad}: {e}");
        }
    }
}
