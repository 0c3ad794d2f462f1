//! The page's files, embedded in the binary so that `plumb ui` needs nothing beside it and the
//! page loads nothing from elsewhere (no CDN; the Content-Security-Policy forbids it too).

/// An embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The path it is served at.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

/// Every file the page uses: the HTML, the stylesheet and the script's ES modules (plain
/// JavaScript, no build step: see the top of `assets/app.js` for why).
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/app.css"),
    },
    js("/assets/app.js", include_str!("../assets/app.js")),
    js("/assets/util.js", include_str!("../assets/util.js")),
    js("/assets/filters.js", include_str!("../assets/filters.js")),
    js("/assets/layout.js", include_str!("../assets/layout.js")),
    js("/assets/graph.js", include_str!("../assets/graph.js")),
    js("/assets/views.js", include_str!("../assets/views.js")),
    js("/assets/object.js", include_str!("../assets/object.js")),
];

/// A JavaScript module.
const fn js(path: &'static str, body: &'static str) -> Asset {
    Asset {
        path,
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

/// The asset served at `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module a script imports is served (a missing one breaks the whole page).
    #[test]
    fn every_imported_module_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for line in a.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split('"').nth(1) else {
                    continue;
                };
                let path = format!("/assets/{}", spec.trim_start_matches("./"));
                assert!(
                    find(&path).is_some(),
                    "{} imports {spec}, not embedded",
                    a.path
                );
            }
        }
        assert!(find("/").is_some_and(|a| a.body.contains("/assets/app.js")));
    }
}
