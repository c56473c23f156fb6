//! STOW-RS (DICOMweb Store Instances, PS3.18 §10.5): POST the Part 10 files as
//! `multipart/related; type="application/dicom"` to `{root}/studies/{StudyInstanceUID}`, then
//! read the Store Instances Response Module (PS3.18 Table 10.5.3-1) to learn which instances
//! the origin server kept. Files of a study go in one request (split only past
//! [`MAX_REQUEST_BYTES`]); the ones not stored are retried after an exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

use super::cstore::{store_status, StoreStatus};
use super::destination::stowrs_endpoint;
use super::{deliver_in_rounds, Delivery, Outcome, Retry};
use crate::error::error_chain;

/// Above this, a study's files are split over several requests: origin servers cap request
/// sizes, and the whole body is held in memory.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

struct Item {
    path: PathBuf,
    study: String,
    sop_instance: String,
}

fn read_item(path: &Path) -> Result<Item, String> {
    crate::io::dicom::guard::check_file(path, Some(tags::PIXEL_DATA))
        .map_err(|why| format!("not a readable DICOM file ({why})"))?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("not a readable DICOM file ({})", error_chain(&e)))?;
    let study = obj
        .element(tags::STUDY_INSTANCE_UID)
        .ok()
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        })
        .filter(|s| !s.is_empty())
        .ok_or("no StudyInstanceUID (0020,000D): a DICOMweb server cannot file it")?;
    Ok(Item {
        path: path.to_path_buf(),
        study,
        sop_instance: obj
            .meta()
            .media_storage_sop_instance_uid
            .trim_end_matches(['\0', ' '])
            .to_string(),
    })
}

/// Sends `files` to the DICOMweb root `root`. Never fails as a whole: the [`Delivery`] says
/// which files went and why the others did not.
pub fn store(files: &[PathBuf], root: &str, retry: &Retry) -> Delivery {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    deliver_in_rounds(
        format!("STOW-RS {root}"),
        files,
        retry,
        read_item,
        |item: &Item| &item.path,
        |pending| {
            let mut by_study: BTreeMap<String, Vec<Item>> = BTreeMap::new();
            for item in pending {
                by_study.entry(item.study.clone()).or_default().push(item);
            }
            let mut done = Vec::new();
            for (study, items) in by_study {
                for request in split_by_size(items) {
                    let results = post(&agent, root, &study, &request);
                    done.extend(request.into_iter().zip(results));
                }
            }
            done
        },
    )
}

fn split_by_size(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut out: Vec<Vec<Item>> = vec![];
    let mut size = 0usize;
    for item in items {
        let len = std::fs::metadata(&item.path)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        if out.is_empty() || (size + len > MAX_REQUEST_BYTES && !out.last().unwrap().is_empty()) {
            out.push(vec![]);
            size = 0;
        }
        size += len;
        out.last_mut().expect("pushed above").push(item);
    }
    out
}

/// One POST; one result per item, in order.
fn post(agent: &ureq::Agent, root: &str, study: &str, items: &[Item]) -> Vec<Outcome> {
    let all = |reason: String, retry: bool| {
        items
            .iter()
            .map(|_| Outcome::Failed {
                reason: reason.clone(),
                retry,
            })
            .collect::<Vec<_>>()
    };
    let url = match stowrs_endpoint(root, Some(study)) {
        Ok(url) => url,
        Err(e) => return all(e.to_string(), false),
    };
    let mut parts = Vec::with_capacity(items.len());
    let mut results: Vec<Option<Outcome>> = vec![None; items.len()];
    for (i, item) in items.iter().enumerate() {
        match std::fs::read(&item.path) {
            Ok(bytes) => parts.push(bytes),
            Err(e) => {
                results[i] = Some(Outcome::Failed {
                    reason: format!("cannot read the file ({e})"),
                    retry: false,
                });
                parts.push(Vec::new());
            }
        }
    }
    let sent: Vec<&[u8]> = parts
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(p, _)| p.as_slice())
        .collect();
    if sent.is_empty() {
        return results.into_iter().map(|r| r.expect("all set")).collect();
    }
    let boundary = format!("paramap-{:032x}", rand::random::<u128>());
    let body = multipart_body(&sent, &boundary);
    let n_sent = sent.len();
    drop(sent);
    drop(parts);
    let response = agent
        .post(&url)
        .header(
            "Content-Type",
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header("Accept", "application/dicom+json")
        .send(&body[..]);
    let answer = match response {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            interpret_response(
                status,
                &text,
                items
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| r.is_none())
                    .map(|(i, _)| i.sop_instance.as_str()),
            )
        }
        Err(e) => {
            let reason = format!("POST {url} failed ({})", error_chain(&e));
            (0..n_sent)
                .map(|_| Outcome::Failed {
                    reason: reason.clone(),
                    retry: true,
                })
                .collect()
        }
    };
    let mut answer = answer.into_iter();
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| answer.next().expect("one answer per part sent")))
        .collect()
}

/// The request body (RFC 2387 multipart/related, PS3.18 §8.6.1.2): each part a whole Part 10
/// file as `application/dicom`.
pub fn multipart_body(parts: &[&[u8]], boundary: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.len() + 80).sum::<usize>() + 64);
    for part in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// Reads a STOW-RS response (PS3.18 §10.5.3): 200 all stored, 202 some stored (warnings or
/// failures listed), 409 none stored; the JSON lists the stored instances in
/// ReferencedSOPSequence (0008,1199) and the refused ones, with a FailureReason (0008,1197),
/// in FailedSOPSequence (0008,1198). An instance counts as stored only if the server says so.
pub fn interpret_response<'a>(
    status: u16,
    body: &str,
    sop_instances: impl Iterator<Item = &'a str>,
) -> Vec<Outcome> {
    let uids: Vec<&str> = sop_instances.collect();
    let all = |reason: String, retry: bool| {
        uids.iter()
            .map(|_| Outcome::Failed {
                reason: reason.clone(),
                retry,
            })
            .collect::<Vec<_>>()
    };
    let snippet: String = body.chars().take(200).collect();
    if !matches!(status, 200 | 202 | 409) {
        let retry = status >= 500 || status == 408 || status == 429;
        return all(
            format!("the server answered HTTP {status}: {}", snippet.trim()),
            retry,
        );
    }
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let json = json.as_ref().map(|j| match j {
        // Some servers wrap the response data set in an array.
        serde_json::Value::Array(a) if a.len() == 1 => &a[0],
        other => other,
    });
    let Some(json) = json else {
        return if status == 200 {
            // 200 means every instance was stored, whatever the body.
            uids.iter().map(|_| Outcome::Stored).collect()
        } else {
            all(
                format!("the server answered HTTP {status} without saying which instances it kept"),
                true,
            )
        };
    };
    let items = |tag: &str| -> Vec<&serde_json::Value> {
        json.get(tag)
            .and_then(|e| e.get("Value"))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let first_str = |item: &serde_json::Value, tag: &str| -> Option<String> {
        item.get(tag)?
            .get("Value")?
            .as_array()?
            .first()?
            .as_str()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    };
    let stored: Vec<String> = items("00081199")
        .into_iter()
        .filter_map(|i| first_str(i, "00081155"))
        .collect();
    let failed: HashMap<String, Option<u16>> = items("00081198")
        .into_iter()
        .filter_map(|i| {
            let reason = i
                .get("00081197")
                .and_then(|e| e.get("Value"))
                .and_then(|v| v.as_array())
                .and_then(|a| a.first())
                .and_then(|v| v.as_u64())
                .map(|v| v as u16);
            first_str(i, "00081155").map(|uid| (uid, reason))
        })
        .collect();
    uids.iter()
        .map(|uid| {
            if let Some(code) = failed.get(*uid) {
                match code.map(|c| store_status(c, None)) {
                    Some(StoreStatus::Failure { reason, retry }) => Outcome::Failed {
                        reason: format!("the server refused it: {reason}"),
                        retry,
                    },
                    _ => Outcome::Failed {
                        reason: format!(
                            "the server refused it (FailureReason {})",
                            code.map(|c| format!("{c:04X}H"))
                                .unwrap_or_else(|| "not given".into())
                        ),
                        retry: false,
                    },
                }
            } else if stored.iter().any(|s| s == uid) || (status == 200 && stored.is_empty()) {
                Outcome::Stored
            } else {
                Outcome::Failed {
                    reason: format!(
                        "the server answered HTTP {status} and did not list this instance as stored"
                    ),
                    retry: true,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body_frames_each_file_between_boundaries() {
        let body = multipart_body(&[b"AB", b"\r\n--x"], "B1");
        assert_eq!(
            body,
            b"--B1\r\nContent-Type: application/dicom\r\n\r\nAB\r\n--B1\r\nContent-Type: application/dicom\r\n\r\n\r\n--x\r\n--B1--\r\n"
        );
    }

    #[test]
    fn a_202_response_stores_only_what_it_lists_and_keeps_the_failure_reason() {
        let body = r#"{
          "00081198": {"vr": "SQ", "Value": [
            {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.30"]},
             "00081155": {"vr": "UI", "Value": ["1.2.3.2"]},
             "00081197": {"vr": "US", "Value": [43264]}}]},
          "00081199": {"vr": "SQ", "Value": [
            {"00081155": {"vr": "UI", "Value": ["1.2.3.1"]}}]}
        }"#;
        let r = interpret_response(202, body, ["1.2.3.1", "1.2.3.2", "1.2.3.3"].into_iter());
        assert_eq!(r[0], Outcome::Stored);
        // 43264 = A900H: data set does not match SOP class; sending it again will not help.
        assert!(
            matches!(&r[1], Outcome::Failed { reason, retry: false } if reason.contains("A900H"))
        );
        assert!(matches!(&r[2], Outcome::Failed { retry: true, .. }));
    }

    #[test]
    fn http_errors_are_retried_only_when_the_server_may_recover() {
        let r = interpret_response(503, "busy", ["1"].into_iter());
        assert!(matches!(&r[0], Outcome::Failed { retry: true, reason } if reason.contains("503")));
        let r = interpret_response(415, "", ["1"].into_iter());
        assert!(matches!(&r[0], Outcome::Failed { retry: false, .. }));
        let r = interpret_response(200, "", ["1", "2"].into_iter());
        assert_eq!(r, vec![Outcome::Stored, Outcome::Stored]);
        let r = interpret_response(409, "", ["1"].into_iter());
        assert!(matches!(&r[0], Outcome::Failed { .. }));
    }
}
