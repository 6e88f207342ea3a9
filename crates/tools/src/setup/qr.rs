//! The QR code of the key URI and its drawings: terminal (UTF-8 half blocks or ASCII
//! with ANSI colours), PNG and SVG.
//!
//! Terminal drawings are black on white whatever the theme. Every line first sets
//! the foreground to black and the background to white (SGR 30;47) and ends with a
//! reset, and the dark modules are the *glyphs* (`▀ ▄ █`, or `##` in ASCII). So:
//! - on a light theme, with or without colour support, dark ink on a light page;
//! - on a dark theme the explicit colours still give dark modules on a white square
//!   (a drawing in the terminal's default colours would come out inverted there,
//!   which many phone scanners refuse);
//! - copied as plain text (colours lost), it is still a correct drawing on paper.
//!
//! Cells that are dark all over (`█`, `##`) also get a black background: terminals
//! that draw block glyphs from the font (xterm, for one) leave a pixel row of the
//! cell uncovered, and a white seam every two modules across dark areas is enough
//! to keep `zbarimg` from decoding a screenshot at full size.
//!
//! The quiet zone (4 modules, as ISO/IEC 18004 asks) is drawn in the same white.

use qrcode::render::svg;
use qrcode::types::QrError;
use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, in modules, on every side (ISO/IEC 18004's 4).
pub const QUIET_ZONE: usize = 4;
/// The terminal drawing's quiet zone when the full one would push the code's top row off
/// a 24-row terminal: phone scanners read a code with 2 modules of white around it, on
/// light and dark themes alike; one that has scrolled away, they do not.
pub const NARROW_QUIET_ZONE: usize = 2;
/// The widest terminal drawing we aim for.
pub const MAX_COLUMNS: usize = 80;
/// The tallest half-block drawing we aim for: a 24-row terminal less the prompt's line
/// below it, so the whole code is on screen while the code is asked for.
pub const MAX_ROWS: usize = 23;
/// Pixels per module in the PNG and SVG files (with the quiet zone, a typical
/// code is about 450 px square: large enough to scan from a screen).
pub const PIXELS_PER_MODULE: usize = 8;

/// Black foreground on a white background; the drawings' only colours.
const BLACK_ON_WHITE: &str = "\x1b[30;47m";
/// Behind cells that are dark all over (`█`, `##`): black, so no seam shows through.
const DARK_BACKGROUND: &str = "\x1b[40m";
const LIGHT_BACKGROUND: &str = "\x1b[47m";
const RESET: &str = "\x1b[0m";

/// How the code is drawn in the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalDrawing {
    /// Two modules per character cell, one above the other (`▀ ▄ █` and space).
    HalfBlocks,
    /// Two ASCII characters per module (`##` dark, two spaces light), with ANSI colours;
    /// for terminals that cannot show UTF-8.
    AsciiAnsi,
}

impl TerminalDrawing {
    /// Columns the drawing of `code` needs.
    pub fn columns(self, code: &QrCode) -> usize {
        let side = terminal_side(code);
        match self {
            TerminalDrawing::HalfBlocks => side,
            TerminalDrawing::AsciiAnsi => 2 * side,
        }
    }

    /// Text rows the drawing of `code` takes.
    pub fn rows(self, code: &QrCode) -> usize {
        let side = terminal_side(code);
        match self {
            TerminalDrawing::HalfBlocks => side.div_ceil(2),
            TerminalDrawing::AsciiAnsi => side,
        }
    }

    /// The drawing, one line per text row, each line ending in a colour reset and `\n`.
    pub fn draw(self, code: &QrCode) -> String {
        let zone = terminal_quiet_zone(code);
        match self {
            TerminalDrawing::HalfBlocks => half_blocks(code, zone),
            TerminalDrawing::AsciiAnsi => ascii_ansi(code, zone),
        }
    }
}

/// The quiet zone of the terminal drawings: the full one where the half-block drawing
/// still fits [`MAX_ROWS`], else [`NARROW_QUIET_ZONE`].
pub fn terminal_quiet_zone(code: &QrCode) -> usize {
    if fits_with_full_quiet_zone(code) {
        QUIET_ZONE
    } else {
        NARROW_QUIET_ZONE
    }
}

/// Whether the half-block drawing of `code` with the full quiet zone fits [`MAX_ROWS`].
fn fits_with_full_quiet_zone(code: &QrCode) -> bool {
    (code.width() + 2 * QUIET_ZONE).div_ceil(2) <= MAX_ROWS
}

/// Modules across a terminal drawing, quiet zone included.
fn terminal_side(code: &QrCode) -> usize {
    code.width() + 2 * terminal_quiet_zone(code)
}

/// Encodes `text` with the strongest error correction that still fits a half-block
/// drawing into [`MAX_ROWS`] (and so [`MAX_COLUMNS`]): M (15 %) where it fits, else L
/// (7 %). Q and H only make the drawing bigger, and a screen does not get smudged like
/// paper. When even L is taller, the L code is returned; the caller says so.
pub fn encode(text: &[u8]) -> Result<QrCode, QrError> {
    let medium = QrCode::with_error_correction_level(text, EcLevel::M);
    if let Ok(code) = &medium {
        // Judged with the full quiet zone: M only where it costs no module of the zone.
        if fits_with_full_quiet_zone(code) {
            return medium;
        }
    }
    QrCode::with_error_correction_level(text, EcLevel::L)
}

/// Whether the module at (x, y) of the drawing (a quiet zone of `zone` included) is dark.
fn dark_at(code: &QrCode, zone: usize, x: usize, y: usize) -> bool {
    let width = code.width();
    if x < zone || y < zone {
        return false;
    }
    let (x, y) = (x - zone, y - zone);
    x < width && y < width && code[(x, y)] == Color::Dark
}

fn half_blocks(code: &QrCode, zone: usize) -> String {
    let side = code.width() + 2 * zone;
    let mut out = String::new();
    // An odd side leaves a last half row below the quiet zone: light, like the zone.
    for row in 0..side.div_ceil(2) {
        out.push_str(BLACK_ON_WHITE);
        let mut dark_background = false;
        for x in 0..side {
            let top = dark_at(code, zone, x, 2 * row);
            let bottom = dark_at(code, zone, x, 2 * row + 1);
            let full = top && bottom;
            if full != dark_background {
                out.push_str(if full {
                    DARK_BACKGROUND
                } else {
                    LIGHT_BACKGROUND
                });
                dark_background = full;
            }
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str(RESET);
        out.push('\n');
    }
    out
}

fn ascii_ansi(code: &QrCode, zone: usize) -> String {
    let side = code.width() + 2 * zone;
    let mut out = String::new();
    for y in 0..side {
        out.push_str(BLACK_ON_WHITE);
        let mut dark_run = false;
        for x in 0..side {
            let dark = dark_at(code, zone, x, y);
            if dark != dark_run {
                out.push_str(if dark {
                    DARK_BACKGROUND
                } else {
                    LIGHT_BACKGROUND
                });
                dark_run = dark;
            }
            out.push_str(if dark { "##" } else { "  " });
        }
        out.push_str(RESET);
        out.push('\n');
    }
    out
}

/// A greyscale PNG, black on white, [`PIXELS_PER_MODULE`] pixels per module, quiet zone included.
pub fn png(code: &QrCode) -> Result<Vec<u8>, png::EncodingError> {
    let side = code.width() + 2 * QUIET_ZONE;
    let pixels = side * PIXELS_PER_MODULE;
    let mut image = Vec::with_capacity(pixels * pixels);
    for y in 0..pixels {
        for x in 0..pixels {
            let dark = dark_at(
                code,
                QUIET_ZONE,
                x / PIXELS_PER_MODULE,
                y / PIXELS_PER_MODULE,
            );
            image.push(if dark { 0u8 } else { 255u8 });
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, pixels as u32, pixels as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&image)?;
        writer.finish()?;
    }
    Ok(out)
}

/// An SVG document, black on white, quiet zone included.
pub fn svg(code: &QrCode) -> String {
    code.render::<svg::Color>()
        .quiet_zone(true)
        .module_dimensions(PIXELS_PER_MODULE as u32, PIXELS_PER_MODULE as u32)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPICAL: &str = "otpauth://totp/build-server-01:alice%40build-server-01?\
        secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=build-server-01";
    /// A short host name's URI, which fits with the full quiet zone.
    const SHORT: &str =
        "otpauth://totp/vm:alice%40vm?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=vm";

    /// Reads a half-block drawing back into rows of modules (quiet zone included).
    fn modules_of_half_blocks(drawing: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in drawing.lines() {
            let glyphs = line
                .strip_prefix(BLACK_ON_WHITE)
                .and_then(|l| l.strip_suffix(RESET))
                .expect("every line is black on white and ends in a reset");
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in strip_sgr(glyphs).chars() {
                top.push(c == '█' || c == '▀');
                bottom.push(c == '█' || c == '▄');
            }
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn half_blocks_hold_every_module_and_the_quiet_zone() {
        let code = encode(SHORT.as_bytes()).unwrap();
        assert_eq!(terminal_quiet_zone(&code), QUIET_ZONE);
        let rows = modules_of_half_blocks(&half_blocks(&code, QUIET_ZONE));
        let side = code.width() + 2 * QUIET_ZONE;
        assert_eq!(
            rows.len(),
            side + 1,
            "odd side: one light half row at the bottom"
        );
        for (y, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), side);
            for (x, &dark) in row.iter().enumerate() {
                assert_eq!(dark, dark_at(&code, QUIET_ZONE, x, y), "module ({x}, {y})");
                if x < QUIET_ZONE
                    || y < QUIET_ZONE
                    || x >= side - QUIET_ZONE
                    || y >= side - QUIET_ZONE
                {
                    assert!(!dark, "quiet zone at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn cells_dark_all_over_have_a_black_background() {
        let code = encode(TYPICAL.as_bytes()).unwrap();
        let mut full_cells = 0;
        for line in TerminalDrawing::HalfBlocks.draw(&code).lines() {
            let mut background = "";
            let mut rest = line;
            while let Some(c) = rest.chars().next() {
                if let Some(sgr) = rest.strip_prefix('\x1b') {
                    let end = sgr.find('m').unwrap();
                    let codes = &sgr[1..end];
                    if codes.contains("40") {
                        background = "black";
                    } else if codes.contains("47") || codes == "0" {
                        background = "white";
                    }
                    rest = &sgr[end + 1..];
                    continue;
                }
                match c {
                    '█' => {
                        assert_eq!(background, "black", "{line:?}");
                        full_cells += 1;
                    }
                    _ => assert_eq!(background, "white", "{line:?}"),
                }
                rest = &rest[c.len_utf8()..];
            }
        }
        assert!(full_cells > 50);
    }

    #[test]
    fn a_short_uri_fits_a_24_row_terminal_at_level_m_with_the_full_quiet_zone() {
        let code = encode(SHORT.as_bytes()).unwrap();
        assert_eq!(code.error_correction_level(), EcLevel::M);
        assert_eq!(terminal_quiet_zone(&code), QUIET_ZONE);
        let drawing = TerminalDrawing::HalfBlocks.draw(&code);
        assert!(drawing.lines().count() <= MAX_ROWS);
        assert_eq!(
            drawing.lines().count(),
            TerminalDrawing::HalfBlocks.rows(&code)
        );
    }

    #[test]
    fn a_typical_uri_fits_a_24_row_terminal_with_a_narrow_quiet_zone() {
        let code = encode(TYPICAL.as_bytes()).unwrap();
        assert_eq!(code.error_correction_level(), EcLevel::L);
        assert_eq!(terminal_quiet_zone(&code), NARROW_QUIET_ZONE);
        let drawing = TerminalDrawing::HalfBlocks.draw(&code);
        let widest = drawing
            .lines()
            .map(|l| strip_sgr(l).chars().count())
            .max()
            .unwrap();
        assert!(widest <= MAX_COLUMNS, "{widest} columns");
        assert_eq!(widest, TerminalDrawing::HalfBlocks.columns(&code));
        assert!(
            drawing.lines().count() <= MAX_ROWS,
            "{} rows",
            drawing.lines().count()
        );
        let modules = modules_of_half_blocks(&drawing);
        assert!(modules[..NARROW_QUIET_ZONE]
            .iter()
            .flatten()
            .all(|dark| !dark));
    }

    #[test]
    fn long_uris_fall_back_to_level_l() {
        let long = format!("{TYPICAL}&x={}", "a".repeat(200));
        let code = encode(long.as_bytes()).unwrap();
        assert_eq!(code.error_correction_level(), EcLevel::L);
        let medium = QrCode::with_error_correction_level(long.as_bytes(), EcLevel::M).unwrap();
        assert!(medium.width() > code.width());
    }

    #[test]
    fn ascii_drawing_uses_two_columns_per_module() {
        let code = encode(b"otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXP").unwrap();
        let drawing = ascii_ansi(&code, QUIET_ZONE);
        let side = code.width() + 2 * QUIET_ZONE;
        assert_eq!(drawing.lines().count(), side);
        assert!(drawing.is_ascii());
        for (y, line) in drawing.lines().enumerate() {
            let visible: String = strip_sgr(line);
            assert_eq!(visible.len(), 2 * side);
            for x in 0..side {
                let pair = &visible[2 * x..2 * x + 2];
                assert_eq!(
                    pair == "##",
                    dark_at(&code, QUIET_ZONE, x, y),
                    "module ({x}, {y})"
                );
            }
        }
    }

    fn strip_sgr(line: &str) -> String {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn png_and_svg_are_well_formed() {
        let code = encode(TYPICAL.as_bytes()).unwrap();
        let png = png(&code).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = svg(&code);
        assert!(svg.contains("<svg") && svg.ends_with("</svg>"));
    }
}
