//! The derivatives dataset's own files (BIDS 1.10 "Derivatives"): dataset_description.json,
//! README and the `.bidsignore` listing the maps the specification does not yet name.

use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::maps::{ADC_MAPS, DSC_MAPS};

/// BIDS version the derivatives follow.
pub const BIDS_VERSION: &str = "1.10.0";

/// (datatype, suffix) pairs that the BIDS schema names for derivatives; the others are listed
/// in the derivatives' `.bidsignore`, as the BIDS validator asks for files "not yet covered by
/// the specification".
const IN_SPECIFICATION: &[(&str, &str)] = &[("dwi", "ADC"), ("dwi", "S0map"), ("dwi", "mask")];

/// The `.bidsignore` text: group tables and every map pattern outside [`IN_SPECIFICATION`].
fn bidsignore() -> String {
    let mut lines = vec![
        "# paramap's maps that the BIDS specification does not yet name (DSC perfusion derivatives)".to_string(),
        "group_stats.tsv".to_string(),
        "group_stats.json".to_string(),
    ];
    for (datatype, maps) in [("dwi", ADC_MAPS), ("perf", DSC_MAPS)] {
        for m in maps.iter() {
            let Some((desc, suffix)) = m.spec().bids else {
                continue;
            };
            if IN_SPECIFICATION.contains(&(datatype, suffix)) {
                continue;
            }
            let pattern = match desc {
                "" => format!("**/{datatype}/*_{suffix}.*"),
                d => format!("**/{datatype}/*_desc-{d}_{suffix}.*"),
            };
            if !lines.contains(&pattern) {
                lines.push(pattern);
            }
        }
    }
    lines.join("\n") + "\n"
}

/// dataset_description.json (BIDS 1.10 "Derived dataset and pipeline description"), README and
/// .bidsignore of the derivatives; rewritten atomically, the same text for the same options.
pub(super) fn write_dataset_files(deriv: &Path, root: &Path, cmd: &str) -> Result<()> {
    std::fs::create_dir_all(deriv).map_err(|e| Error::io(deriv, e))?;
    let description = json!({
        "Name": "paramap: DSC perfusion and ADC maps",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "paramap",
            "Version": env!("CARGO_PKG_VERSION"),
            "Description": format!("Quantitative DSC perfusion and ADC maps; command: {cmd}"),
        }],
        "SourceDatasets": [{"URL": format!("file://{}", root.display())}],
        "DatasetLinks": {"raw": format!("file://{}", root.display())},
    });
    let text =
        serde_json::to_string_pretty(&description).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::io::output::write_file_atomic(&deriv.join("dataset_description.json"), &(text + "\n"))?;
    crate::io::output::write_file_atomic(
        &deriv.join("README"),
        "Maps computed by paramap (`paramap bids`) from the dataset named in dataset_description.json.\nEach map has a JSON sidecar with its units, description, source and paramap's full record of the choices made.\n",
    )?;
    crate::io::output::write_file_atomic(&deriv.join(".bidsignore"), &bidsignore())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidsignore_lists_what_the_specification_lacks_only() {
        let text = bidsignore();
        assert!(text.contains("**/perf/*_desc-leakagecorrected_rCBV.*"));
        assert!(!text.contains("*_ADC.*"));
        assert!(!text.contains("**/dwi/*_desc-brain_mask.*"));
        assert!(text.contains("**/perf/*_desc-brain_mask.*"));
    }
}
