//! The federation catalog's full-text index.
//!
//! Text is normalized (lowercase, full-width ASCII folded to half-width) and
//! split into runs. Latin and digit runs become words (and `snake_case`
//! names also their parts). CJK runs become single characters and bigrams,
//! so `机动车` (bigrams 机动, 动车) and `登记` both find `机动车登记信息`
//! although Chinese has no spaces. A query matches a dataset only when all
//! of its terms occur; hits are ranked by BM25-style scores weighted by where
//! the term occurs (title above field names above descriptions), with a bonus
//! when the whole query appears in the title.
//!
//! Updates are per department: a new catalog version replaces the
//! department's documents in one step, touching only that department's
//! postings.

use std::collections::{BTreeMap, HashMap};

use exchange_proto::v1 as pb;

const W_TITLE: f32 = 4.0;
const W_ID: f32 = 2.0;
const W_TAG: f32 = 2.0;
const W_FIELD_NAME: f32 = 1.5;
const W_DESCRIPTION: f32 = 1.0;
const W_FIELD_DESCRIPTION: f32 = 0.8;
const MAX_QUERY_CHARS: usize = 256;

/// Filters and text of a search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub text: String,
    pub department: Option<String>,
    pub sharing: Option<String>,
    pub key_type: Option<String>,
    pub limit: usize,
}

/// One ranked result.
#[derive(Debug, Clone)]
pub struct Hit {
    pub dataset: pb::Dataset,
    pub score: f64,
    pub matched_fields: Vec<String>,
}

struct Doc {
    dataset: pb::Dataset,
    /// Length-normalisation input: total weighted term count.
    length: f32,
    title_norm: String,
    /// Per field: normalized "name description" text, for matched_fields.
    field_text: Vec<(String, String)>,
    live: bool,
}

/// The in-memory index. Not synchronised: wrap it in a lock.
#[derive(Default)]
pub struct SearchIndex {
    docs: Vec<Doc>,
    /// term -> (doc slot, weighted term frequency)
    postings: HashMap<String, Vec<(u32, f32)>>,
    /// department -> doc slots
    by_department: BTreeMap<String, Vec<u32>>,
    by_id: HashMap<String, u32>,
    live_docs: usize,
    total_length: f64,
    free: Vec<u32>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("datasets", &self.live_docs)
            .field("terms", &self.postings.len())
            .finish()
    }
}

/// Lowercases and folds full-width ASCII (U+FF01..U+FF5E) and the ideographic space.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F | 0x3040..=0x30FF)
}

enum Run {
    Word(String),
    Cjk(Vec<char>),
}

fn runs(text: &str) -> Vec<Run> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut cjk = Vec::new();
    let flush_word = |word: &mut String, out: &mut Vec<Run>| {
        if !word.is_empty() {
            out.push(Run::Word(std::mem::take(word)));
        }
    };
    let flush_cjk = |cjk: &mut Vec<char>, out: &mut Vec<Run>| {
        if !cjk.is_empty() {
            out.push(Run::Cjk(std::mem::take(cjk)));
        }
    };
    for c in normalize(text).chars() {
        if is_cjk(c) {
            flush_word(&mut word, &mut out);
            cjk.push(c);
        } else if c.is_alphanumeric() || c == '_' {
            flush_cjk(&mut cjk, &mut out);
            word.push(c);
        } else {
            flush_word(&mut word, &mut out);
            flush_cjk(&mut cjk, &mut out);
        }
    }
    flush_word(&mut word, &mut out);
    flush_cjk(&mut cjk, &mut out);
    out
}

/// Terms indexed for a piece of document text.
fn document_terms(text: &str, out: &mut Vec<String>) {
    for run in runs(text) {
        match run {
            Run::Word(w) => {
                if w.contains('_') {
                    out.extend(w.split('_').filter(|p| !p.is_empty()).map(str::to_string));
                }
                out.push(w);
            }
            Run::Cjk(chars) => {
                out.extend(chars.iter().map(|c| c.to_string()));
                out.extend(chars.windows(2).map(|w| w.iter().collect::<String>()));
            }
        }
    }
}

/// Terms a query must all match: words, and CJK bigrams (or the single
/// character of a one-character run).
fn query_terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in runs(text) {
        match run {
            Run::Word(w) => out.push(w),
            Run::Cjk(chars) if chars.len() == 1 => out.push(chars[0].to_string()),
            Run::Cjk(chars) => out.extend(chars.windows(2).map(|w| w.iter().collect::<String>())),
        }
    }
    out.sort();
    out.dedup();
    out
}

impl SearchIndex {
    pub fn new() -> SearchIndex {
        SearchIndex::default()
    }

    pub fn len(&self) -> usize {
        self.live_docs
    }

    pub fn is_empty(&self) -> bool {
        self.live_docs == 0
    }

    /// Replaces every dataset of `department` with `datasets`.
    pub fn replace_department(&mut self, department: &str, datasets: Vec<pb::Dataset>) {
        self.remove_department(department);
        let mut slots = Vec::with_capacity(datasets.len());
        for dataset in datasets {
            slots.push(self.insert(dataset));
        }
        self.by_department.insert(department.to_string(), slots);
    }

    pub fn remove_department(&mut self, department: &str) {
        let Some(slots) = self.by_department.remove(department) else {
            return;
        };
        for slot in slots {
            let doc = &mut self.docs[slot as usize];
            if !doc.live {
                continue;
            }
            doc.live = false;
            self.live_docs -= 1;
            self.total_length -= doc.length as f64;
            self.by_id.remove(&doc.dataset.id);
            let mut terms = Vec::new();
            collect_weighted_terms(&doc.dataset, &mut |t, _| terms.push(t));
            terms.sort();
            terms.dedup();
            for t in terms {
                if let Some(list) = self.postings.get_mut(&t) {
                    list.retain(|(s, _)| *s != slot);
                    if list.is_empty() {
                        self.postings.remove(&t);
                    }
                }
            }
            self.docs[slot as usize].dataset = pb::Dataset::default();
            self.docs[slot as usize].field_text.clear();
            self.free.push(slot);
        }
    }

    fn insert(&mut self, dataset: pb::Dataset) -> u32 {
        let mut weights: HashMap<String, f32> = HashMap::new();
        let mut length = 0.0f32;
        collect_weighted_terms(&dataset, &mut |t, w| {
            *weights.entry(t).or_insert(0.0) += w;
            length += w;
        });
        let doc = Doc {
            title_norm: normalize(&format!("{} {}", dataset.title, dataset.title_en)),
            field_text: dataset
                .fields
                .iter()
                .map(|f| {
                    (
                        f.name.clone(),
                        normalize(&format!("{} {}", f.name, f.description)),
                    )
                })
                .collect(),
            dataset,
            length,
            live: true,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.docs[s as usize] = doc;
                s
            }
            None => {
                self.docs.push(doc);
                (self.docs.len() - 1) as u32
            }
        };
        for (term, w) in weights {
            self.postings.entry(term).or_default().push((slot, w));
        }
        self.by_id
            .insert(self.docs[slot as usize].dataset.id.clone(), slot);
        self.live_docs += 1;
        self.total_length += length as f64;
        slot
    }

    pub fn get(&self, id: &str) -> Option<&pb::Dataset> {
        self.by_id.get(id).map(|s| &self.docs[*s as usize].dataset)
    }

    /// Every dataset, by department and then id.
    pub fn datasets(&self) -> Vec<&pb::Dataset> {
        let mut all: Vec<&pb::Dataset> = self
            .by_department
            .values()
            .flatten()
            .map(|s| &self.docs[*s as usize].dataset)
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Datasets matching every filter and every query term, best first.
    /// An empty text lists all datasets that pass the filters, by id.
    pub fn search(&self, query: &SearchQuery) -> (Vec<Hit>, usize) {
        let limit = if query.limit == 0 {
            20
        } else {
            query.limit.min(500)
        };
        let text: String = query.text.chars().take(MAX_QUERY_CHARS).collect();
        let terms = query_terms(&text);
        let passes = |d: &pb::Dataset| {
            query
                .department
                .as_deref()
                .is_none_or(|dep| d.department == dep)
                && query.sharing.as_deref().is_none_or(|s| d.sharing == s)
                && query
                    .key_type
                    .as_deref()
                    .is_none_or(|k| d.fields.iter().any(|f| f.key_type == k))
        };
        if terms.is_empty() {
            let mut all: Vec<&Doc> = self
                .docs
                .iter()
                .filter(|d| d.live && passes(&d.dataset))
                .collect();
            all.sort_by(|a, b| a.dataset.id.cmp(&b.dataset.id));
            let total = all.len();
            let hits = all
                .into_iter()
                .take(limit)
                .map(|d| Hit {
                    dataset: d.dataset.clone(),
                    score: 0.0,
                    matched_fields: vec![],
                })
                .collect();
            return (hits, total);
        }
        // Intersect postings, rarest term first.
        let mut lists = Vec::with_capacity(terms.len());
        for t in &terms {
            match self.postings.get(t) {
                Some(list) => lists.push((t, list)),
                None => return (Vec::new(), 0),
            }
        }
        lists.sort_by_key(|(_, l)| l.len());
        let n = self.live_docs.max(1) as f32;
        let avg = (self.total_length / self.live_docs.max(1) as f64) as f32;
        let mut scores: HashMap<u32, f32> = HashMap::with_capacity(lists[0].1.len());
        for (i, (_, list)) in lists.iter().enumerate() {
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            let mut next = HashMap::with_capacity(scores.len().max(list.len()));
            for &(slot, tf) in list.iter() {
                if i > 0 && !scores.contains_key(&slot) {
                    continue;
                }
                let len = self.docs[slot as usize].length;
                let k1 = 1.2;
                let b = 0.5;
                let s = idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * len / avg.max(1.0)));
                next.insert(slot, scores.get(&slot).copied().unwrap_or(0.0) + s);
            }
            scores = next;
            if scores.is_empty() {
                return (Vec::new(), 0);
            }
        }
        let phrase = normalize(text.trim());
        let mut ranked: Vec<(u32, f32)> = scores
            .into_iter()
            .filter(|(slot, _)| passes(&self.docs[*slot as usize].dataset))
            .map(|(slot, s)| {
                let doc = &self.docs[slot as usize];
                let bonus = if !phrase.is_empty() && doc.title_norm.contains(&phrase) {
                    2.0
                } else {
                    0.0
                };
                (slot, s + bonus)
            })
            .collect();
        let total = ranked.len();
        ranked.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| {
                    self.docs[a.0 as usize]
                        .dataset
                        .id
                        .cmp(&self.docs[b.0 as usize].dataset.id)
                })
        });
        let hits = ranked
            .into_iter()
            .take(limit)
            .map(|(slot, score)| {
                let doc = &self.docs[slot as usize];
                let matched_fields = doc
                    .field_text
                    .iter()
                    .filter(|(_, t)| terms.iter().any(|q| t.contains(q.as_str())))
                    .map(|(name, _)| name.clone())
                    .collect();
                Hit {
                    dataset: doc.dataset.clone(),
                    score: score as f64,
                    matched_fields,
                }
            })
            .collect();
        (hits, total)
    }
}

fn collect_weighted_terms(d: &pb::Dataset, sink: &mut dyn FnMut(String, f32)) {
    let mut buf = Vec::new();
    let mut emit = |text: &str, w: f32, sink: &mut dyn FnMut(String, f32)| {
        buf.clear();
        document_terms(text, &mut buf);
        for t in buf.drain(..) {
            sink(t, w);
        }
    };
    emit(&d.title, W_TITLE, sink);
    emit(&d.title_en, W_TITLE, sink);
    emit(&d.id, W_ID, sink);
    emit(&d.description, W_DESCRIPTION, sink);
    for tag in &d.tags {
        emit(tag, W_TAG, sink);
    }
    for f in &d.fields {
        emit(&f.name, W_FIELD_NAME, sink);
        emit(&f.description, W_FIELD_DESCRIPTION, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(
        dept: &str,
        id: &str,
        title: &str,
        desc: &str,
        fields: &[(&str, &str, &str)],
    ) -> pb::Dataset {
        pb::Dataset {
            id: format!("{dept}/{id}"),
            department: dept.into(),
            title: title.into(),
            description: desc.into(),
            sharing: "conditional".into(),
            fields: fields
                .iter()
                .map(|(n, d, k)| pb::Field {
                    name: (*n).into(),
                    description: (*d).into(),
                    key_type: (*k).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn index() -> SearchIndex {
        let mut idx = SearchIndex::new();
        idx.replace_department(
            "vehicle-admin",
            vec![
                ds(
                    "vehicle-admin",
                    "vehicles",
                    "机动车登记信息",
                    "Motor vehicle registrations 机动车所有人及车辆信息",
                    &[
                        ("plate_no", "号牌号码", "vehicle_plate"),
                        ("owner_id", "机动车所有人身份证号", "person_id"),
                    ],
                ),
                ds(
                    "vehicle-admin",
                    "licences",
                    "驾驶证信息",
                    "driving licences",
                    &[("holder_id", "持证人身份证号", "person_id")],
                ),
            ],
        );
        idx.replace_department(
            "real-estate",
            vec![ds(
                "real-estate",
                "properties",
                "不动产登记信息",
                "real estate registrations",
                &[
                    ("owner_id", "权利人身份证号", "person_id"),
                    ("address", "坐落", ""),
                ],
            )],
        );
        idx.replace_department(
            "tax",
            vec![ds(
                "tax",
                "taxpayers",
                "纳税人登记信息",
                "Registered taxpayers",
                &[
                    ("org_code", "统一社会信用代码", "org_code"),
                    ("registered_address", "注册地址", ""),
                ],
            )],
        );
        idx
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.dataset.id.as_str()).collect()
    }

    #[test]
    fn chinese_without_spaces() {
        let idx = index();
        let q = |t: &str| {
            idx.search(&SearchQuery {
                text: t.into(),
                ..Default::default()
            })
            .0
        };
        assert_eq!(ids(&q("机动车")), vec!["vehicle-admin/vehicles"]);
        let reg = q("登记");
        assert_eq!(reg.len(), 3, "{:?}", ids(&reg));
        assert!(ids(&reg).contains(&"vehicle-admin/vehicles"));
        assert_eq!(ids(&q("机动车登记信息"))[0], "vehicle-admin/vehicles");
        assert_eq!(ids(&q("车")).len(), 1);
        assert!(q("飞机").is_empty());
    }

    #[test]
    fn english_field_names_and_full_width() {
        let idx = index();
        let q = |t: &str| {
            idx.search(&SearchQuery {
                text: t.into(),
                ..Default::default()
            })
            .0
        };
        assert_eq!(ids(&q("taxpayers")), vec!["tax/taxpayers"]);
        assert_eq!(ids(&q("ＴＡＸＰＡＹＥＲＳ")), vec!["tax/taxpayers"]);
        assert_eq!(ids(&q("plate")), vec!["vehicle-admin/vehicles"]);
        let owner = q("owner_id");
        assert_eq!(owner.len(), 2);
        assert!(owner[0].matched_fields.contains(&"owner_id".to_string()));
    }

    #[test]
    fn title_matches_outrank_description_matches() {
        let idx = index();
        let hits = idx
            .search(&SearchQuery {
                text: "身份证号".into(),
                ..Default::default()
            })
            .0;
        assert_eq!(hits.len(), 3);
        let hits = idx
            .search(&SearchQuery {
                text: "机动车".into(),
                ..Default::default()
            })
            .0;
        assert!(hits[0].score > 0.0);
        let hits = idx
            .search(&SearchQuery {
                text: "信息".into(),
                ..Default::default()
            })
            .0;
        assert!(hits.len() >= 3);
    }

    #[test]
    fn filters_and_replacement() {
        let mut idx = index();
        let hits = idx
            .search(&SearchQuery {
                key_type: Some("person_id".into()),
                ..Default::default()
            })
            .0;
        assert_eq!(hits.len(), 3);
        let hits = idx
            .search(&SearchQuery {
                text: "登记".into(),
                department: Some("tax".into()),
                ..Default::default()
            })
            .0;
        assert_eq!(ids(&hits), vec!["tax/taxpayers"]);
        let hits = idx
            .search(&SearchQuery {
                sharing: Some("none".into()),
                ..Default::default()
            })
            .0;
        assert!(hits.is_empty());
        // A new version replaces the department's datasets.
        idx.replace_department(
            "vehicle-admin",
            vec![ds(
                "vehicle-admin",
                "boats",
                "船舶登记",
                "",
                &[("hull", "船号", "")],
            )],
        );
        assert!(idx.get("vehicle-admin/vehicles").is_none());
        assert!(idx
            .search(&SearchQuery {
                text: "机动车".into(),
                ..Default::default()
            })
            .0
            .is_empty());
        assert_eq!(
            ids(&idx
                .search(&SearchQuery {
                    text: "船舶".into(),
                    ..Default::default()
                })
                .0),
            vec!["vehicle-admin/boats"]
        );
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn hostile_queries_are_harmless() {
        let idx = index();
        for q in [
            "'; DROP TABLE x; --",
            "\u{0}\u{202e}",
            &"登".repeat(100_000),
            "🚗🚗",
            "   ",
        ] {
            let _ = idx.search(&SearchQuery {
                text: q.to_string(),
                ..Default::default()
            });
        }
    }
}
