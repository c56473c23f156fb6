//! The registry of output maps: one entry per image paramap writes, from which every name,
//! title, unit, DICOM code, colormap and help line is derived, so that a map has one name and
//! one meaning everywhere (NIfTI file `<stem>.nii.gz`, DICOM folder `dicom/<stem>/`, preview
//! `preview/<stem>.png`, the report, `--help` and the record's unit table).
//!
//! Data only: no I/O and no arithmetic. [`Map::spec`] gives an entry; [`DSC_MAPS`] and
//! [`ADC_MAPS`] list each command's outputs in the order they are documented; the tests check
//! that every kernel and CPU twin an entry names exists.

use serde::Serialize;

/// A coded concept: (code value, coding scheme designator, code meaning).
pub type Code = (&'static str, &'static str, &'static str);

/// Coding scheme of paramap's own codes, for quantities DICOM has no code for.
pub const PRIVATE_SCHEME: &str = "99PARAMAP";

/// Preview colormaps (tables and rationale in `report::colormap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    Viridis,
    Magma,
    /// Linear greyscale, for anatomical images (S0, trace-weighted) shown beside the maps.
    Grey,
    /// The response classes 0–3 on the fixed range 0..3: dark grey (not classified), blue
    /// (treatment-effect-like), light grey (indeterminate), vermillion (progression-like);
    /// Okabe & Ito's colour-blind-safe palette (2008).
    Classes,
}

/// What kind of image an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A float32 map `[z, y, x]`: 0 outside the mask, NaN where a voxel can't be computed.
    Map,
    /// An integer class map stored as float32 (0 outside or invalid).
    Classes,
    /// A uint8 mask (1 inside).
    Mask,
    /// A 4-D float32 series `[t, z, y, x]`.
    Series,
}

/// One output image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Map {
    // DWI (`paramap adc`).
    Adc,
    AdcS0,
    AdcFitNrmse,
    AdcMask,
    Trace,
    // DSC (`paramap dsc`).
    Rcbv,
    RcbvUncorrected,
    RcbvClass,
    Cbv,
    CbvIntegral,
    CbvIntegralCorrected,
    Cbf,
    Rcbf,
    Mtt,
    Tmax,
    Delay,
    K2,
    K1,
    Kep,
    Ttp,
    Peak,
    Psr,
    DscS0,
    DscFitNrmse,
    DeconvolutionNrmse,
    LeakageNrmse,
    ResiduePeak,
    BrainMask,
    ReferenceMask,
    LeakageReferenceMask,
    AifMask,
    VofMask,
    DeltaR2star,
    // The study's reading (`paramap run` with DSC and DWI).
    Response,
    AdcOnDsc,
}

/// A registry entry.
#[derive(Debug, Clone, Copy)]
pub struct MapSpec {
    /// File stem: `<stem>.nii.gz`, `dicom/<stem>/`, `preview/<stem>.png`.
    pub stem: &'static str,
    /// Title on previews, in the report and in DICOM Series Description (ASCII).
    pub title: &'static str,
    /// Unit as printed on colour bars and in the record ("" for masks; ASCII).
    pub unit: &'static str,
    /// What the values are, for `--help`, the record and the NIfTI header (`descrip`, ≤ 79
    /// ASCII characters, checked by a test).
    pub description: &'static str,
    pub kind: Kind,
    /// The DICOM quantity when the map is sent as a derived series.
    pub quantity: Option<Quantity>,
    pub colormap: Colormap,
    /// The WGSL kernel that computes it (`shaders/<kernel>.wgsl`), if any.
    pub kernel: Option<&'static str>,
    /// Its f64 CPU twin, `models::<module>::<function>`.
    pub twin: Option<&'static str>,
    /// When it is written ("" = always).
    pub when: &'static str,
    /// Its BIDS derivative name, `(desc, suffix)`: `sub-01_ses-1[_desc-<desc>]_<suffix>.nii.gz`
    /// (BIDS 1.10 "Derivatives: common data types": `desc-` tells maps of one suffix apart,
    /// `_mask` for masks; `ADC` and `S0map` are the suffixes the BIDS schema knows for
    /// diffusion maps; the perfusion suffixes follow the quantities' usual abbreviations, as
    /// the DSC derivatives are not yet in the specification). `""` = no `desc-`. `None`: not
    /// written by `paramap bids` (4-D series).
    pub bids: Option<(&'static str, &'static str)>,
}

const fn entry(stem: &'static str, title: &'static str, unit: &'static str) -> MapSpec {
    MapSpec {
        stem,
        title,
        unit,
        description: "",
        kind: Kind::Map,
        quantity: None,
        colormap: Colormap::Viridis,
        kernel: None,
        twin: None,
        when: "",
        bids: None,
    }
}

impl MapSpec {
    const fn describe(mut self, d: &'static str) -> Self {
        self.description = d;
        self
    }
    const fn kind(mut self, k: Kind) -> Self {
        self.kind = k;
        self
    }
    const fn dicom(mut self, q: Quantity) -> Self {
        self.quantity = Some(q);
        self
    }
    const fn magma(mut self) -> Self {
        self.colormap = Colormap::Magma;
        self
    }
    const fn grey(mut self) -> Self {
        self.colormap = Colormap::Grey;
        self
    }
    const fn classes(mut self) -> Self {
        self.colormap = Colormap::Classes;
        self
    }
    const fn by(mut self, kernel: &'static str, twin: &'static str) -> Self {
        self.kernel = Some(kernel);
        self.twin = Some(twin);
        self
    }
    const fn when(mut self, w: &'static str) -> Self {
        self.when = w;
        self
    }
    const fn bids(mut self, desc: &'static str, suffix: &'static str) -> Self {
        self.bids = Some((desc, suffix));
        self
    }
}

const DELTA: (&str, &str) = ("delta_r2star", "models::delta_r2star::compute_cpu");
const RESIDUE: (&str, &str) = ("residue_fit", "models::residue_fit::fit_cpu");
const BSW: (&str, &str) = ("leakage_bsw", "models::leakage_bsw::fit_cpu");
const LEIGH: (&str, &str) = ("leakage_leigh", "models::leakage_leigh::fit_cpu");
const SVD: (&str, &str) = ("deconvolution", "models::deconvolution::deconvolve_cpu");
const LEAK_RESIDUAL: (&str, &str) = ("leakage_residual", "models::leakage_residual::residual_cpu");
const SVD_RESIDUAL: (&str, &str) = (
    "deconvolution_residual",
    "models::deconvolution_residual::residual_cpu",
);
const ADC: (&str, &str) = ("adc", "models::adc::fit_cpu");

impl Map {
    /// The registry entry.
    pub const fn spec(self) -> MapSpec {
        use Map::*;
        match self {
            Adc => entry("adc", "ADC", "mm2/s")
                .describe("apparent diffusion coefficient (mm2/s)")
                .dicom(Quantity::Adc)
                .by(ADC.0, ADC.1)
                .bids("", "ADC"),
            AdcS0 => entry("s0", "S0", "input units")
                .describe("fitted signal at b = 0 (input units)")
                .grey()
                .by(ADC.0, ADC.1)
                .bids("", "S0map"),
            AdcFitNrmse => entry("fit_nrmse", "ADC fit residual", "ratio")
                .describe("RMS residual of the ADC fit / S0")
                .by(ADC.0, ADC.1)
                .bids("adcfit", "NRMSE"),
            AdcMask => entry("mask", "mask", "")
                .describe("voxels fitted (Otsu on the lowest-b trace-weighted image, or --mask)")
                .kind(Kind::Mask)
                .bids("brain", "mask"),
            Trace => entry("trace", "trace-weighted DWI", "input units")
                .describe("trace-weighted image per b-value (b-values in trace.bval)")
                .kind(Kind::Series)
                .grey(),
            Rcbv => entry("rcbv", "rCBV (leakage corrected)", "ratio to white matter")
                .describe("leakage-corrected CBV / white-matter CBV (ratio)")
                .dicom(Quantity::Rcbv)
                .magma()
                .by(RESIDUE.0, RESIDUE.1)
                .bids("leakagecorrected", "rCBV"),
            RcbvUncorrected => entry(
                "rcbv_uncorrected",
                "rCBV (uncorrected)",
                "ratio to white matter",
            )
            .describe("CBV / white-matter CBV without leakage correction (ratio)")
            .magma()
            .by(DELTA.0, DELTA.1)
            .bids("uncorrected", "rCBV"),
            RcbvClass => entry("rcbv_class", "rCBV class", "class")
                .describe("1 rCBV below the low threshold, 2 between, 3 above the high; 0 outside")
                .kind(Kind::Classes)
                .bids("rCBVclass", "dseg"),
            Cbv => entry("cbv", "CBV", "ml/100g")
                .describe("absolute CBV, leakage corrected (ml/100g)")
                .dicom(Quantity::CbvAbsolute)
                .magma()
                .when("deconvolution")
                .bids("leakagecorrected", "CBV"),
            CbvIntegral => entry("cbv_integral", "CBV integral", "1/s*s")
                .describe("integral of dR2*, uncorrected (s^-1*s, proportional to CBV)")
                .dicom(Quantity::Cbv)
                .magma()
                .by(DELTA.0, DELTA.1)
                .bids("integral", "CBV"),
            CbvIntegralCorrected => entry(
                "cbv_integral_corrected",
                "CBV integral (corrected)",
                "1/s*s",
            )
            .describe("integral of dR2*, leakage corrected (s^-1*s, proportional to CBV)")
            .magma()
            .by(RESIDUE.0, RESIDUE.1)
            .bids("integralleakagecorrected", "CBV"),
            Cbf => entry("cbf", "CBF", "ml/100g/min")
                .describe("cerebral blood flow (ml/100g/min)")
                .dicom(Quantity::Cbf)
                .magma()
                .by(RESIDUE.0, RESIDUE.1)
                .when("deconvolution")
                .bids("", "CBF"),
            Rcbf => entry("rcbf", "rCBF", "ratio to white matter")
                .describe("CBF / white-matter CBF (ratio)")
                .magma()
                .by(RESIDUE.0, RESIDUE.1)
                .when("deconvolution")
                .bids("", "rCBF"),
            Mtt => entry("mtt", "MTT", "s")
                .describe("mean transit time (s)")
                .dicom(Quantity::Mtt)
                .by(RESIDUE.0, RESIDUE.1)
                .when("deconvolution")
                .bids("", "MTT"),
            Tmax => entry("tmax", "Tmax", "s")
                .describe("time to the residue's peak from the AIF's (s)")
                .dicom(Quantity::Tmax)
                .by(RESIDUE.0, RESIDUE.1)
                .when("deconvolution")
                .bids("", "Tmax"),
            Delay => entry("delay", "bolus delay", "s")
                .describe("bolus delay relative to the AIF (s), = tmax")
                .by(SVD.0, SVD.1)
                .when("not ssvd")
                .bids("", "delay"),
            K2 => entry("k2", "K2 (leakage)", "1/s")
                .describe("leakage rate K2 (s^-1; > 0 T1-dominant, < 0 T2*-dominant)")
                .dicom(Quantity::K2)
                .by(RESIDUE.0, RESIDUE.1)
                .bids("", "K2"),
            K1 => entry("k1", "K1 (BSW)", "ratio")
                .describe("BSW scale of the reference curve (ratio)")
                .by(BSW.0, BSW.1)
                .when("--leakage bsw or leigh")
                .bids("BSW", "K1"),
            Kep => entry("kep", "kep (leakage efflux)", "1/s")
                .describe("efflux rate k_ep of the bidirectional leakage model (s^-1)")
                .by(LEIGH.0, LEIGH.1)
                .when("--leakage leigh")
                .bids("bidirectional", "kep"),
            Ttp => entry("ttp", "TTP", "s")
                .describe("time to peak of dR2*, from the first frame (s)")
                .dicom(Quantity::Ttp)
                .by(DELTA.0, DELTA.1)
                .bids("", "TTP"),
            Peak => entry("peak", "peak dR2*", "1/s")
                .describe("peak dR2* (s^-1)")
                .by(DELTA.0, DELTA.1)
                .bids("peak", "dR2star"),
            Psr => entry("psr", "PSR", "%")
                .describe("percentage signal recovery (%)")
                .by(DELTA.0, DELTA.1)
                .bids("", "PSR"),
            DscS0 => entry("s0", "S0", "input units")
                .describe("mean baseline signal (input units)")
                .grey()
                .by(DELTA.0, DELTA.1)
                .bids("baseline", "S0map"),
            DscFitNrmse => entry("fit_nrmse", "DSC fit residual", "ratio")
                .describe("RMS residual of the fit / the curve's peak")
                .by(RESIDUE.0, RESIDUE.1)
                .when("parametric")
                .bids("dscfit", "NRMSE"),
            DeconvolutionNrmse => entry("deconvolution_nrmse", "SVD fit residual", "ratio")
                .describe("RMS residual of the SVD deconvolution's fit A*f / the curve's peak")
                .by(SVD_RESIDUAL.0, SVD_RESIDUAL.1)
                .when("ssvd, csvd, osvd or tikhonov")
                .bids("svdfit", "NRMSE"),
            LeakageNrmse => entry("leakage_nrmse", "leakage fit residual", "ratio")
                .describe("RMS residual of the leakage fit K1*Rref - K2*I / the curve's peak")
                .by(LEAK_RESIDUAL.0, LEAK_RESIDUAL.1)
                .when("--leakage bsw or leigh")
                .bids("leakagefit", "NRMSE"),
            ResiduePeak => entry("residue_peak", "max CBF*R", "1/s")
                .describe("peak of the flow-scaled residue CBF*R(t) (s^-1)")
                .by(RESIDUE.0, RESIDUE.1)
                .when("deconvolution")
                .bids("residuepeak", "CBFR"),
            BrainMask => entry("brain_mask", "brain mask", "")
                .describe("voxels analysed (Otsu on the mean image, or --brain-mask)")
                .kind(Kind::Mask)
                .bids("brain", "mask"),
            ReferenceMask => entry("reference_mask", "white-matter reference", "")
                .describe("the white-matter voxels rCBV and rCBF are normalised to")
                .kind(Kind::Mask)
                .bids("whitematter", "mask"),
            LeakageReferenceMask => entry("leakage_reference_mask", "leakage reference", "")
                .describe("non-enhancing voxels of the BSW reference curve")
                .kind(Kind::Mask)
                .bids("leakagereference", "mask"),
            AifMask => entry("aif_mask", "AIF voxels", "")
                .describe("voxels of the arterial input function")
                .kind(Kind::Mask)
                .when("deconvolution")
                .bids("AIF", "mask"),
            VofMask => entry("vof_mask", "VOF voxels", "")
                .describe("voxels of the vein that rescaled the AIF")
                .kind(Kind::Mask)
                .when("with a VOF")
                .bids("VOF", "mask"),
            DeltaR2star => entry("delta_r2star", "dR2*(t)", "1/s")
                .describe("dR2*(t) of the brain voxels (s^-1)")
                .kind(Kind::Series)
                .by(DELTA.0, DELTA.1)
                .when("--save-curves"),
            Response => entry("response", "Response map (rCBV and ADC)", "class")
                .describe("1 treatment-effect-like, 2 indeterminate, 3 progression-like; 0 outside")
                .kind(Kind::Classes)
                .dicom(Quantity::Response)
                .classes(),
            AdcOnDsc => entry("adc", "ADC", "mm2/s")
                .describe("apparent diffusion coefficient (mm2/s), resampled to the DSC grid")
                .dicom(Quantity::Adc)
                .by(ADC.0, ADC.1),
        }
    }

    pub const fn stem(self) -> &'static str {
        self.spec().stem
    }

    /// Its BIDS derivative file name after the source's entities (`prefix`, e.g.
    /// `sub-01_ses-1`): `<prefix>[_desc-<desc>]_<suffix><ext>`; None for maps `paramap bids`
    /// does not write.
    pub fn bids_name(self, prefix: &str, ext: &str) -> Option<String> {
        let (desc, suffix) = self.spec().bids?;
        Some(match desc {
            "" => format!("{prefix}_{suffix}{ext}"),
            d => format!("{prefix}_desc-{d}_{suffix}{ext}"),
        })
    }

    /// The NIfTI header description: "paramap " and the description, cut to 79 bytes.
    pub fn nifti_description(self) -> String {
        let mut d = format!("paramap {}", self.spec().description);
        d.truncate(79);
        d
    }
}

/// `paramap dsc`'s outputs, in the order `--help` lists them.
pub const DSC_MAPS: &[Map] = &[
    Map::Rcbv,
    Map::RcbvUncorrected,
    Map::RcbvClass,
    Map::CbvIntegral,
    Map::CbvIntegralCorrected,
    Map::K2,
    Map::K1,
    Map::Kep,
    Map::Ttp,
    Map::Peak,
    Map::Psr,
    Map::DscS0,
    Map::Cbf,
    Map::Rcbf,
    Map::Cbv,
    Map::Mtt,
    Map::Tmax,
    Map::Delay,
    Map::ResiduePeak,
    Map::DscFitNrmse,
    Map::DeconvolutionNrmse,
    Map::LeakageNrmse,
    Map::BrainMask,
    Map::ReferenceMask,
    Map::LeakageReferenceMask,
    Map::AifMask,
    Map::VofMask,
    Map::DeltaR2star,
];

/// The study reading's outputs (`paramap run`, folder `response/`).
pub const READING_MAPS: &[Map] = &[Map::Response, Map::AdcOnDsc];

/// `paramap adc`'s outputs, in the order `--help` lists them.
pub const ADC_MAPS: &[Map] = &[
    Map::Adc,
    Map::AdcS0,
    Map::AdcFitNrmse,
    Map::AdcMask,
    Map::Trace,
];

/// The `--help` list of `maps`: one line per image, `stem  description [when]`.
pub fn help_list(maps: &[Map]) -> String {
    let width = maps.iter().map(|m| m.stem().len()).max().unwrap_or(0);
    let mut out = String::new();
    for m in maps {
        let s = m.spec();
        out.push_str(&format!("  {:width$}  {}", s.stem, s.description));
        if !s.when.is_empty() {
            out.push_str(&format!(" [{}]", s.when));
        }
        out.push('\n');
    }
    out
}

/// The record's unit table: stem → unit (masks "0/1", class maps "class").
pub fn unit_table(maps: &[Map]) -> std::collections::BTreeMap<&'static str, &'static str> {
    maps.iter()
        .map(|m| {
            let s = m.spec();
            let unit = match s.kind {
                Kind::Mask => "0/1",
                _ => s.unit,
            };
            (s.stem, unit)
        })
        .collect()
}

/// What a map measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Apparent diffusion coefficient; paramap computes mm²/s.
    Adc,
    /// CBV relative to normal-appearing white matter (a ratio).
    Rcbv,
    /// CBV as ∫ΔR2*dt, proportional to blood volume (arbitrary units).
    Cbv,
    /// Absolute CBV, ml/100 g (kH/ρ applied).
    CbvAbsolute,
    /// CBF, ml/100 g/min.
    Cbf,
    /// Mean transit time, s.
    Mtt,
    /// Time to the residue's peak, s.
    Tmax,
    /// Time to peak of the concentration curve, s from the first frame.
    Ttp,
    /// Leakage coefficient K2, s⁻¹ (relative to the AIF with the residue-domain correction, to
    /// the reference curve with BSW).
    K2,
    /// Percentage signal recovery, %.
    Psr,
    /// The response class of the rCBV and ADC reading (1, 2, 3; 0 not classified).
    Response,
    /// Change of a map between follow-up visits, % of the earlier visit's value
    /// (`paramap compare`, docs/methods.md §7).
    Change,
    /// Parametric response map class between visits (1 decreased, 2 unchanged, 3 increased;
    /// 0 not classified; Galbán et al., Nat Med 2009;15:572–576).
    Prm,
}

impl Quantity {
    /// Short name, for messages and labels.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Adc => "ADC",
            Quantity::Rcbv => "rCBV",
            Quantity::Cbv => "CBV",
            Quantity::CbvAbsolute => "CBV",
            Quantity::Cbf => "CBF",
            Quantity::Mtt => "MTT",
            Quantity::Tmax => "Tmax",
            Quantity::Ttp => "TTP",
            Quantity::K2 => "K2",
            Quantity::Psr => "PSR",
            Quantity::Response => "Response class",
            Quantity::Change => "Change",
            Quantity::Prm => "PRM class",
        }
    }

    /// The quantity's code for the RWVM Quantity Definition: DCM codes of CID 7180/4108
    /// (PS3.16; added by CP-1391) where one exists, paramap's own otherwise. rCBV and the
    /// relative CBV share 113056 (cerebral blood volume); their unit says which they are.
    pub fn code(self) -> Code {
        match self {
            Quantity::Adc => ("113041", "DCM", "Apparent Diffusion Coefficient"),
            Quantity::Rcbv | Quantity::Cbv | Quantity::CbvAbsolute => {
                ("113056", "DCM", "Regional Cerebral Blood Volume")
            }
            Quantity::Cbf => ("113055", "DCM", "Regional Cerebral Blood Flow"),
            Quantity::Mtt => ("113052", "DCM", "Mean Transit Time"),
            Quantity::Tmax => ("113084", "DCM", "Tmax"),
            Quantity::Ttp => ("113069", "DCM", "Time To Peak"),
            Quantity::K2 => ("K2", PRIVATE_SCHEME, "Leakage coefficient K2"),
            Quantity::Psr => ("PSR", PRIVATE_SCHEME, "Percentage signal recovery"),
            Quantity::Response => ("RESPONSE", PRIVATE_SCHEME, "Response class rCBV ADC"),
            Quantity::Change => ("CHANGE", PRIVATE_SCHEME, "Change between visits"),
            Quantity::Prm => ("PRM", PRIVATE_SCHEME, "Parametric response map class"),
        }
    }

    /// Derivation Code (CID 7203 Image Derivation): the map's own code where CID 7203 has it;
    /// K2 and PSR are read off the signal's time course (DCM 113066).
    pub fn derivation_code(self) -> Code {
        match self {
            Quantity::K2 | Quantity::Psr => ("113066", "DCM", "Time Course of Signal"),
            // Classes read off the rCBV map and the ADC map.
            Quantity::Response => ("113056", "DCM", "Regional Cerebral Blood Volume"),
            q => q.code(),
        }
    }

    /// UCUM unit of the stored values: (code value, code meaning).
    pub fn unit(self) -> (&'static str, &'static str) {
        match self {
            Quantity::Adc => ("um2/s", "um2/s"),
            Quantity::Rcbv => ("{ratio}", "ratio"),
            Quantity::Cbv => ("[arb'U]", "arbitrary unit"),
            Quantity::CbvAbsolute => ("ml/(100.g)", "ml/100g"),
            // CP-1391 spells ml/100 g/min as ml/(100.g)/min.
            Quantity::Cbf => ("ml/(100.g)/min", "ml/100g/min"),
            Quantity::Mtt | Quantity::Tmax | Quantity::Ttp => ("s", "second"),
            // 10⁻⁶ s⁻¹, as ADC is stored in µm²/s: K2's range (±3×10⁻⁴ s⁻¹ relative to the AIF,
            // ±0.03 s⁻¹ with BSW) then spans many units, so a viewer's window over it (width ≥ 1
            // for the LINEAR function that dcmtk and most viewers implement, PS3.3 C.11.2.1.2)
            // shows contrast.
            Quantity::K2 => ("10*-6/s", "10^-6 per second"),
            Quantity::Psr => ("%", "percent"),
            Quantity::Response | Quantity::Prm => ("{class}", "class"),
            Quantity::Change => ("%", "percent"),
        }
    }

    /// Stored value = paramap's value × this factor (ADC: mm²/s → µm²/s; K2: s⁻¹ → 10⁻⁶ s⁻¹).
    pub fn factor(self) -> f64 {
        match self {
            Quantity::Adc => 1e6,
            Quantity::K2 => 1e6,
            _ => 1.0,
        }
    }

    /// Classic encoding: the unit of one integer step, in [`Quantity::unit`]s, unless the map's
    /// range needs a coarser one (see `io::dicom::derived::classic_slope`). ADC steps of 1 µm²/s are what
    /// scanners store; the others keep three or more significant digits over their usual range.
    pub fn classic_step(self) -> f64 {
        match self {
            Quantity::Adc => 1.0,
            Quantity::Rcbv | Quantity::Cbv | Quantity::CbvAbsolute => 0.001,
            Quantity::Cbf | Quantity::Psr => 0.01,
            Quantity::Response | Quantity::Prm => 1.0,
            Quantity::Change => 0.1,
            Quantity::Mtt | Quantity::Tmax | Quantity::Ttp => 0.001,
            Quantity::K2 => 1.0,
        }
    }

    /// Image Type value 4 of a Parametric Map (Derived Pixel Contrast, PS3.3 C.8.13.1.1.1).
    pub fn pixel_contrast(self) -> &'static str {
        match self {
            Quantity::Adc => "ADC",
            Quantity::Rcbv | Quantity::Cbv | Quantity::CbvAbsolute => "RCBV",
            Quantity::Cbf => "RCBF",
            _ => "NONE",
        }
    }

    /// Every quantity.
    pub const ALL: [Quantity; 13] = [
        Quantity::Adc,
        Quantity::Rcbv,
        Quantity::Cbv,
        Quantity::CbvAbsolute,
        Quantity::Cbf,
        Quantity::Mtt,
        Quantity::Tmax,
        Quantity::Ttp,
        Quantity::K2,
        Quantity::Psr,
        Quantity::Response,
        Quantity::Change,
        Quantity::Prm,
    ];

    /// The ImageType value 3 (and Content Label: CS, upper case, digits, underscore, at most
    /// 16) this quantity's series carry.
    pub fn label(self) -> &'static str {
        match self {
            Quantity::Adc => "ADC",
            Quantity::Rcbv => "RCBV",
            Quantity::Cbv => "CBV_RELATIVE",
            Quantity::CbvAbsolute => "CBV",
            Quantity::Cbf => "CBF",
            Quantity::Mtt => "MTT",
            Quantity::Tmax => "TMAX",
            Quantity::Ttp => "TTP",
            Quantity::K2 => "K2",
            Quantity::Psr => "PSR",
            Quantity::Response => "RESPONSE",
            Quantity::Change => "PCT_CHANGE",
            Quantity::Prm => "PRM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_maps() -> Vec<Map> {
        DSC_MAPS
            .iter()
            .chain(ADC_MAPS)
            .chain(READING_MAPS)
            .copied()
            .collect()
    }

    /// Every kernel an entry names is a shader, and every twin a public function of its module.
    #[test]
    fn every_kernel_and_twin_named_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for m in all_maps() {
            let s = m.spec();
            assert_eq!(
                s.kernel.is_some(),
                s.twin.is_some(),
                "{m:?}: a kernel and its twin"
            );
            if let (Some(k), Some(t)) = (s.kernel, s.twin) {
                let shader = root.join("shaders").join(format!("{k}.wgsl"));
                assert!(shader.is_file(), "{m:?}: {} missing", shader.display());
                let parts: Vec<&str> = t.split("::").collect();
                assert_eq!(parts.len(), 3, "{t}");
                // The twin's module is a file of the shader's stem (STYLE.md: the same stem on
                // both sides); submodules, if any, sit in a folder beside it.
                let file = root
                    .join("src")
                    .join(parts[0])
                    .join(format!("{}.rs", parts[1]));
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{m:?}: twin {}: {e}", file.display()));
                assert!(
                    text.contains(&format!("pub fn {}(", parts[2])),
                    "{m:?}: no pub fn {} in {}",
                    parts[2],
                    file.display()
                );
                // The twin's module says which shader it twins.
                assert!(
                    text.contains(&format!("{k}.wgsl")),
                    "{} names {k}.wgsl",
                    file.display()
                );
            }
        }
    }

    /// One name, one quantity: within a command, no two entries share a stem; descriptions fit
    /// a NIfTI header and are ASCII; maps sent as DICOM have a quantity and titles fit a
    /// Series Description (64 characters).
    #[test]
    fn stems_are_unique_per_command_and_texts_fit_their_fields() {
        for list in [DSC_MAPS, ADC_MAPS, READING_MAPS] {
            let mut stems: Vec<&str> = list.iter().map(|m| m.stem()).collect();
            stems.sort();
            let before = stems.len();
            stems.dedup();
            assert_eq!(before, stems.len(), "duplicate stems in {list:?}");
        }
        for m in all_maps() {
            let s = m.spec();
            assert!(!s.description.is_empty(), "{m:?}");
            assert!(s.description.is_ascii() && s.title.is_ascii() && s.unit.is_ascii());
            assert!(m.nifti_description().len() <= 79);
            assert!(s.title.len() + "paramap ".len() <= 64);
            assert!(
                s.stem
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{}",
                s.stem
            );
        }
        // The clinical maps keep their names: rCBV is the corrected ratio, CBV the absolute.
        assert_eq!(Map::Rcbv.stem(), "rcbv");
        assert_eq!(Map::Rcbv.spec().quantity, Some(Quantity::Rcbv));
        assert_eq!(Map::Cbv.spec().quantity, Some(Quantity::CbvAbsolute));
    }

    /// BIDS names: labels and suffixes alphanumeric (BIDS 1.10 "Entities"), no two maps of a
    /// command with one name, and the names the brief of `paramap bids` promised.
    #[test]
    fn bids_names_are_alphanumeric_and_unique_per_command() {
        for list in [DSC_MAPS, ADC_MAPS] {
            let mut names = vec![];
            for m in list {
                let Some((desc, suffix)) = m.spec().bids else {
                    assert_eq!(m.spec().kind, Kind::Series, "{m:?} has no BIDS name");
                    continue;
                };
                assert!(desc.chars().all(|c| c.is_ascii_alphanumeric()), "{desc}");
                assert!(
                    !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{suffix}"
                );
                names.push(m.bids_name("sub-01", ".nii.gz").unwrap());
            }
            let n = names.len();
            names.sort();
            names.dedup();
            assert_eq!(n, names.len(), "{names:?}");
        }
        assert_eq!(
            Map::Rcbv.bids_name("sub-01_ses-1", ".nii.gz").unwrap(),
            "sub-01_ses-1_desc-leakagecorrected_rCBV.nii.gz"
        );
        assert_eq!(
            Map::Adc.bids_name("sub-01_ses-1", ".json").unwrap(),
            "sub-01_ses-1_ADC.json"
        );
    }

    #[test]
    fn the_help_list_names_every_output_with_its_condition() {
        let help = help_list(DSC_MAPS);
        for m in DSC_MAPS {
            assert!(help.contains(m.stem()), "{m:?}");
        }
        assert!(help.contains("[--leakage bsw or leigh]"));
        assert!(help.contains("[--leakage leigh]"));
        let units = unit_table(ADC_MAPS);
        assert_eq!(units["adc"], "mm2/s");
        assert_eq!(units["mask"], "0/1");
    }
}
