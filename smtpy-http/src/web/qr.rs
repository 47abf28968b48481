//! QR codes drawn as inline SVG on the server (for the authenticator app's
//! `otpauth://` address): one `<path>` of unit squares, no `style`
//! attribute, so the page's Content-Security-Policy allows it.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the symbol, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// The QR code of `text` as an `<svg>` element labelled `label`, or `None`
/// when the text does not fit in a QR code.
pub(crate) fn svg(text: &str, label: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).ok()?;
    let width = code.width();
    let size = width + 2 * QUIET_ZONE;
    let mut path = String::new();
    for (i, color) in code.to_colors().iter().enumerate() {
        if *color == Color::Dark {
            let (x, y) = (i % width + QUIET_ZONE, i / width + QUIET_ZONE);
            let _ = write!(path, "M{x} {y}h1v1h-1z");
        }
    }
    let label = escape(label);
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qr\" viewBox=\"0 0 {size} {size}\" width=\"220\" height=\"220\" role=\"img\" aria-label=\"{label}\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_finder_patterns_and_no_style() {
        let svg = svg(
            "otpauth://totp/smtpy:ann%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=smtpy",
            "QR \"code\"",
        )
        .expect("fits");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style"));
        assert!(svg.contains("aria-label=\"QR &quot;code&quot;\""));
        // The top-left finder pattern: a dark 7×7 ring starting at the quiet zone.
        for (x, y) in [(4, 4), (10, 4), (4, 10), (10, 10), (7, 7)] {
            assert!(svg.contains(&format!("M{x} {y}h1v1h-1z")), "({x},{y}) dark");
        }
        // Its inner light ring.
        assert!(!svg.contains("M5 5h1v1h-1z"));
    }

    #[test]
    fn too_long_text_gives_none() {
        assert!(svg(&"x".repeat(5000), "too long").is_none());
    }
}
