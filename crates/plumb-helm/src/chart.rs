//! Chart loading: directories (with `.helmignore`) and `.tgz` archives
//! (hostile entries rejected), `Chart.yaml` v1/v2, `requirements.yaml`,
//! `values.yaml`, `values.schema.json`, templates, files and subcharts.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use crate::encode::{Plain, yaml_to_plain, yaml_to_value};
use crate::engine::HelmHost;
use crate::error::HelmError;
use crate::template::exec::PreParsed;
use crate::value::Value;

/// Largest accepted file inside a chart (as Helm: 5 MiB).
pub const MAX_FILE: u64 = 5 << 20;
/// Largest accepted decompressed chart (as Helm: 100 MiB).
pub const MAX_CHART: u64 = 100 << 20;
/// Deepest accepted subchart nesting.
pub const MAX_NESTING: usize = 16;

/// A dependency entry of `Chart.yaml`.
#[derive(Debug, Clone, Default)]
pub struct Dependency {
    /// Chart name.
    pub name: String,
    /// Version constraint.
    pub version: String,
    /// Repository URL.
    pub repository: String,
    /// Condition paths, comma separated.
    pub condition: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Alias.
    pub alias: String,
    /// import-values entries (strings or child/parent maps).
    pub import_values: Vec<Value>,
}

/// A loaded chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// `Chart.yaml` as a map (snake/camel keys as written).
    pub meta: Value,
    /// Chart name (after aliasing).
    pub name: String,
    /// Chart version.
    pub version: String,
    /// `application` or `library`.
    pub chart_type: String,
    /// apiVersion (v1 or v2).
    pub api_version: String,
    /// Declared dependencies.
    pub dependencies: Vec<Dependency>,
    /// `values.yaml`.
    pub values: Value,
    /// `values.schema.json`.
    pub schema: Option<Vec<u8>>,
    /// Template files (`templates/...`), sorted by path (shared: cheap clones).
    pub templates: Rc<Vec<(String, String)>>,
    /// Parses of the template sources that parse, made while loading.
    pub preparsed: Rc<Vec<PreParsed>>,
    /// Other files, for `.Files` (shared: cheap clones).
    pub files: Rc<BTreeMap<String, Vec<u8>>>,
    /// Subcharts found in `charts/`.
    pub subcharts: Vec<Chart>,
}

impl Chart {
    /// Whether this is a library chart.
    pub fn is_library(&self) -> bool {
        self.chart_type == "library"
    }

    /// CRD files (`crds/` in this chart and its subcharts), as (path, content).
    pub fn crds(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let full = if prefix.is_empty() {
            self.name.clone()
        } else {
            format!("{prefix}/charts/{}", self.name)
        };
        for (p, d) in self.files.iter() {
            if p.starts_with("crds/")
                && (p.ends_with(".yaml") || p.ends_with(".yml") || p.ends_with(".json"))
            {
                out.push((format!("{full}/{p}"), d.clone()));
            }
        }
        for s in &self.subcharts {
            out.extend(s.crds(&full));
        }
        out
    }
}

/// Loads a chart from a directory or a `.tgz` file.
pub fn load_path(path: &Path) -> Result<Chart, HelmError> {
    let meta = std::fs::metadata(path).map_err(|e| HelmError::Load {
        chart: path.display().to_string(),
        msg: e.to_string(),
    })?;
    if meta.is_dir() {
        load_dir(path)
    } else {
        let data = std::fs::read(path).map_err(|e| HelmError::Load {
            chart: path.display().to_string(),
            msg: e.to_string(),
        })?;
        load_archive(&data)
    }
}

/// Loads a chart directory, honouring `.helmignore`.
pub fn load_dir(dir: &Path) -> Result<Chart, HelmError> {
    let name = dir.display().to_string();
    let err = |msg: String| HelmError::Load {
        chart: name.clone(),
        msg,
    };
    let ignore = match std::fs::read_to_string(dir.join(".helmignore")) {
        Ok(s) => Ignore::parse(&s),
        Err(_) => Ignore::default(),
    };
    let mut files = Vec::new();
    let mut total = 0u64;
    walk(dir, "", &ignore, &mut files, &mut total, 0).map_err(err)?;
    load_files(files, 0)
}

fn walk(
    dir: &Path,
    rel: &str,
    ignore: &Ignore,
    out: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("directory nesting too deep at {rel}"));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let fname = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            fname.clone()
        } else {
            format!("{rel}/{fname}")
        };
        let p = e.path();
        let md = std::fs::metadata(&p).map_err(|er| format!("reading {r}: {er}"))?;
        if md.is_dir() {
            if ignore.ignored(&r, true) {
                continue;
            }
            walk(&p, &r, ignore, out, total, depth + 1)?;
        } else {
            if ignore.ignored(&r, false) {
                continue;
            }
            if !md.is_file() {
                return Err(format!("cannot load irregular file {r}"));
            }
            if md.len() > MAX_FILE {
                return Err(format!(
                    "file {r} is larger than the maximum file size {MAX_FILE}"
                ));
            }
            *total += md.len();
            if *total > MAX_CHART {
                return Err(format!("chart is larger than the maximum size {MAX_CHART}"));
            }
            let mut data = std::fs::read(&p).map_err(|er| format!("reading {r}: {er}"))?;
            if data.starts_with(&[0xEF, 0xBB, 0xBF]) {
                data.drain(..3);
            }
            out.push((r, data));
        }
    }
    Ok(())
}

/// Loads a chart from `.tgz` bytes. Absolute paths, `..`, links and
/// oversized entries are rejected.
pub fn load_archive(data: &[u8]) -> Result<Chart, HelmError> {
    load_archive_depth(data, 0)
}

fn load_archive_depth(data: &[u8], depth: usize) -> Result<Chart, HelmError> {
    let err = |msg: String| HelmError::Load {
        chart: "archive".into(),
        msg,
    };
    let gz = flate2::read::GzDecoder::new(data);
    let mut ar = tar::Archive::new(gz.take(MAX_CHART + 1));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0u64;
    let entries = ar
        .entries()
        .map_err(|e| err(format!("reading archive: {e}")))?;
    for ent in entries {
        let mut ent = ent.map_err(|e| err(format!("reading archive: {e}")))?;
        let ty = ent.header().entry_type();
        let path = ent
            .path()
            .map_err(|e| err(format!("bad entry path: {e}")))?
            .to_string_lossy()
            .replace('\\', "/");
        if ty.is_dir() {
            continue;
        }
        if ty.is_pax_global_extensions() || ty.is_pax_local_extensions() || ty.is_gnu_longname() {
            continue;
        }
        if !(ty.is_file() || ty == tar::EntryType::Continuous) {
            return Err(err(format!("archive entry {path} is not a regular file")));
        }
        if path.starts_with('/') || path.split('/').any(|s| s == "..") {
            return Err(err(format!(
                "chart illegally contains content outside the base directory: {path:?}"
            )));
        }
        let size = ent.header().size().unwrap_or(u64::MAX);
        if size > MAX_FILE {
            return Err(err(format!(
                "file {path} is larger than the maximum file size {MAX_FILE}"
            )));
        }
        total += size;
        if total > MAX_CHART {
            return Err(err(format!(
                "chart is larger than the maximum size {MAX_CHART}"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        (&mut ent)
            .take(MAX_FILE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| err(format!("reading {path}: {e}")))?;
        if buf.len() as u64 > MAX_FILE {
            return Err(err(format!(
                "file {path} is larger than the maximum file size"
            )));
        }
        // Strip the top directory.
        let Some((_, rest)) = path.trim_start_matches("./").split_once('/') else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            buf.drain(..3);
        }
        files.push((rest.to_string(), buf));
    }
    if files.is_empty() {
        return Err(err("no files in chart archive".into()));
    }
    load_files(files, depth)
}

fn s_of(v: &Value, k: &str) -> String {
    match v {
        Value::Map(m) => match m.borrow().get(k) {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Nil) | None => String::new(),
            Some(other) => crate::fmt::sprint_one(other),
        },
        _ => String::new(),
    }
}

fn parse_deps(v: &Value) -> Vec<Dependency> {
    let Value::Map(m) = v else { return Vec::new() };
    let Some(Value::List(l)) = m.borrow().get("dependencies").cloned() else {
        return Vec::new();
    };
    l.iter()
        .filter(|d| matches!(d, Value::Map(_)))
        .map(|d| {
            let Value::Map(dm) = d else {
                return Dependency::default();
            };
            let dm = dm.borrow();
            let tags = match dm.get("tags") {
                Some(Value::List(t)) => t.iter().map(crate::funcs::strval).collect(),
                _ => Vec::new(),
            };
            let import_values = match dm.get("import-values") {
                Some(Value::List(t)) => t.as_ref().clone(),
                _ => Vec::new(),
            };
            Dependency {
                name: s_of(d, "name"),
                version: s_of(d, "version"),
                repository: s_of(d, "repository"),
                condition: s_of(d, "condition"),
                tags,
                alias: s_of(d, "alias"),
                import_values,
            }
        })
        .collect()
}

/// Builds a chart from (path, data) pairs relative to the chart root.
pub fn load_files(files: Vec<(String, Vec<u8>)>, depth: usize) -> Result<Chart, HelmError> {
    /// Empties the parse cache when the outermost load ends, however it ends.
    struct ClearCache;
    impl Drop for ClearCache {
        fn drop(&mut self) {
            PREPARSED.with_borrow_mut(BTreeMap::clear);
        }
    }
    let _clear = (depth == 0).then(|| {
        PREPARSED.with_borrow_mut(BTreeMap::clear);
        ClearCache
    });
    if depth > MAX_NESTING {
        return Err(HelmError::Load {
            chart: "subchart".into(),
            msg: "subcharts nested too deeply".into(),
        });
    }
    let mut meta = None;
    let mut reqs = None;
    let mut values_text = None;
    let mut schema = None;
    let mut templates = Vec::new();
    let mut other = BTreeMap::new();
    let mut sub: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut sub_tgz: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, data) in files {
        // Valid UTF-8 (the usual case) is checked much faster than lossily converted.
        let text = || match std::str::from_utf8(&data) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(&data).into_owned(),
        };
        match name.as_str() {
            "Chart.yaml" => {
                meta = Some(yaml_to_value(&text()).map_err(|e| HelmError::Load {
                    chart: "Chart.yaml".into(),
                    msg: e,
                })?);
            }
            "requirements.yaml" => reqs = Some(text()),
            // Lock files are chart metadata, not `.Files`.
            "Chart.lock" | "requirements.lock" => {}
            "values.yaml" => values_text = Some(text()),
            "values.schema.json" => schema = Some(data),
            n if n.starts_with("templates/") => templates.push((name.clone(), text())),
            n if n.starts_with("charts/") => {
                let rest = &n["charts/".len()..];
                if rest.ends_with(".prov") {
                    other.insert(name.clone(), data);
                    continue;
                }
                match rest.split_once('/') {
                    Some((c, f)) => sub
                        .entry(c.to_string())
                        .or_default()
                        .push((f.to_string(), data)),
                    None if rest.ends_with(".tgz") => sub_tgz.push((rest.to_string(), data)),
                    None => {}
                }
            }
            _ => {
                other.insert(name, data);
            }
        }
    }
    templates.sort();
    // values.yaml is read on another thread while the templates parse here:
    // on large charts the two are each a quarter of a render.
    let (values, preparsed) = std::thread::scope(|scope| {
        let text = values_text.as_deref().unwrap_or("");
        let job = (text.len() >= PARALLEL_VALUES).then(|| scope.spawn(move || yaml_to_plain(text)));
        let preparsed = preparse(&templates);
        let values = match job {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err("values.yaml reader panicked".into())),
            None => yaml_to_plain(text),
        };
        (values, preparsed)
    });
    let values = match values {
        Ok(Plain::Nil) => Value::empty_map(),
        Ok(m @ Plain::Map(_)) => m.into_value(),
        Ok(_) => {
            return Err(HelmError::Load {
                chart: "values.yaml".into(),
                msg: "cannot load values.yaml: not a map".into(),
            });
        }
        Err(e) => {
            return Err(HelmError::Load {
                chart: "values.yaml".into(),
                msg: format!("cannot load values.yaml: {e}"),
            });
        }
    };
    let meta = meta.ok_or_else(|| HelmError::Load {
        chart: "chart".into(),
        msg: "Chart.yaml file is missing".into(),
    })?;
    if !matches!(meta, Value::Map(_)) {
        return Err(HelmError::Load {
            chart: "Chart.yaml".into(),
            msg: "Chart.yaml is not a map".into(),
        });
    }
    let name = s_of(&meta, "name");
    if name.is_empty() {
        return Err(HelmError::Load {
            chart: "Chart.yaml".into(),
            msg: "validation: chart.metadata.name is required".into(),
        });
    }
    let mut api_version = s_of(&meta, "apiVersion");
    if api_version.is_empty() {
        api_version = "v1".into();
    }
    let mut dependencies = parse_deps(&meta);
    if api_version == "v1"
        && dependencies.is_empty()
        && let Some(r) = reqs
        && let Ok(rv) = yaml_to_value(&r)
    {
        dependencies = parse_deps(&rv);
        if let (Value::Map(mm), Value::Map(rm)) = (&meta, &rv)
            && let Some(d) = rm.borrow().get("dependencies")
        {
            mm.borrow_mut().insert("dependencies".into(), d.clone());
        }
    }
    let mut subcharts = Vec::new();
    for (cname, files) in sub {
        if files.iter().all(|(f, _)| f != "Chart.yaml") {
            // Not a chart (e.g. a README); Helm errors only when it is loaded.
            continue;
        }
        let c = load_files(files, depth + 1).map_err(|e| HelmError::Load {
            chart: name.clone(),
            msg: format!("error unpacking {cname} in {name}: {e}"),
        })?;
        subcharts.push(c);
    }
    for (fname, data) in sub_tgz {
        let c = load_archive_depth(&data, depth + 1).map_err(|e| HelmError::Load {
            chart: name.clone(),
            msg: format!("error unpacking {fname} in {name}: {e}"),
        })?;
        subcharts.push(c);
    }
    Ok(Chart {
        version: s_of(&meta, "version"),
        chart_type: s_of(&meta, "type"),
        name,
        api_version,
        dependencies,
        meta,
        values,
        schema,
        templates: Rc::new(templates),
        preparsed: Rc::new(preparsed),
        files: Rc::new(other),
        subcharts,
    })
}

/// Smallest `values.yaml` worth a thread of its own.
const PARALLEL_VALUES: usize = 16 * 1024;

thread_local! {
    /// Parses by source during one load: Bitnami's `common` library comes
    /// vendored in several subcharts.
    static PREPARSED: std::cell::RefCell<BTreeMap<String, PreParsed>> =
        const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Parses the template sources of one chart (sorted by path), reusing
/// parses of equal sources made earlier in the same load.
fn preparse(templates: &[(String, String)]) -> Vec<PreParsed> {
    PREPARSED.with_borrow_mut(|cache| {
        templates
            .iter()
            .filter_map(|(_, src)| {
                if let Some(p) = cache.get(src.as_str()) {
                    return Some(p.clone());
                }
                let p = PreParsed::parse(src, &HelmHost::is_func)?;
                cache.insert(src.clone(), p.clone());
                Some(p)
            })
            .collect()
    })
}

/// `.helmignore` rules (Helm's subset of gitignore).
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Rule {
    pattern: String,
    negate: bool,
    dir_only: bool,
    /// Pattern contains a slash: match the whole path.
    full: bool,
}

impl Ignore {
    /// Parses `.helmignore` text and adds Helm's default rule (`templates/.?*`).
    pub fn parse(s: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in s.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l == "!" {
                continue;
            }
            let (negate, l) = match l.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, l),
            };
            let dir_only = l.ends_with('/');
            let p = l.trim_end_matches('/').trim_start_matches('/');
            if p.is_empty() {
                continue;
            }
            rules.push(Rule {
                pattern: p.to_string(),
                negate,
                dir_only,
                full: p.contains('/'),
            });
        }
        Ignore { rules }
    }

    /// Is this path (relative, `/`-separated) ignored?
    pub fn ignored(&self, path: &str, is_dir: bool) -> bool {
        if path == ".helmignore" {
            return false;
        }
        // Helm's default: hidden files in templates/.
        if let Some(rest) = path.strip_prefix("templates/")
            && rest.starts_with('.')
            && rest.len() > 1
            && !rest.contains('/')
        {
            return true;
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        let mut ignored = false;
        for r in &self.rules {
            if r.dir_only && !is_dir {
                continue;
            }
            let target = if r.full { path } else { base };
            if glob_match(&r.pattern, target) {
                ignored = !r.negate;
            }
        }
        ignored
    }
}

/// Go's `filepath.Match` (no `/` crossing for `*`).
pub fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    glob_rec(&p, &t, false)
}

/// gobwas-style glob used by `.Files.Glob` (`**` crosses `/`).
pub fn glob_match_files(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    glob_rec(&p, &t, true)
}

fn glob_rec(p: &[char], t: &[char], super_star: bool) -> bool {
    if p.is_empty() {
        return t.is_empty();
    }
    match p[0] {
        '*' => {
            let double = super_star && p.get(1) == Some(&'*');
            let rest = if double { &p[2..] } else { &p[1..] };
            for i in 0..=t.len() {
                if glob_rec(rest, &t[i..], super_star) {
                    return true;
                }
                if i < t.len() && t[i] == '/' && !double {
                    return false;
                }
            }
            false
        }
        '?' => !t.is_empty() && t[0] != '/' && glob_rec(&p[1..], &t[1..], super_star),
        '[' => {
            let Some(end) = p.iter().position(|c| *c == ']') else {
                return false;
            };
            if t.is_empty() {
                return false;
            }
            let class = &p[1..end];
            let (neg, class) = match class.first() {
                Some('^') | Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut m = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    if class[i] <= t[0] && t[0] <= class[i + 2] {
                        m = true;
                    }
                    i += 3;
                } else {
                    if class[i] == t[0] {
                        m = true;
                    }
                    i += 1;
                }
            }
            m != neg && glob_rec(&p[end + 1..], &t[1..], super_star)
        }
        '\\' if p.len() > 1 => {
            !t.is_empty() && t[0] == p[1] && glob_rec(&p[2..], &t[1..], super_star)
        }
        c => !t.is_empty() && t[0] == c && glob_rec(&p[1..], &t[1..], super_star),
    }
}
