//! Faces followed from frame to frame. At each detection the tracks are matched to the new
//! faces by overlap with where each track was heading (IoU) and by appearance (cosine of the
//! embeddings), greedily, best pair first: ByteTrack's association without its low-score
//! second pass (maskid's detector gives no low-score boxes), with appearance added because
//! with `--detect-every 3` a walking face can move further than its own width between
//! detections. A track no face has matched for `max_gap_s` ends.

use maskid_core::{BBox, Embedding};

/// How tracks are matched and ended.
#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    /// Overlap with a track's predicted box that matches a face by position alone.
    pub min_iou: f32,
    /// Cosine similarity that matches a face to a nearby track by appearance alone (within
    /// [`NEAR_WIDTHS`] box widths): about the same-person threshold of the models.
    pub min_similarity: f32,
    /// A track unmatched this long ends, seconds.
    pub max_gap_s: f64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { min_iou: 0.2, min_similarity: 0.45, max_gap_s: 1.0 }
    }
}

/// How far, in widths of the track's box, a face matched by appearance alone may be.
pub const NEAR_WIDTHS: f32 = 2.0;

/// One face seen at a detection.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Where.
    pub bbox: BBox,
    /// Its embedding.
    pub embedding: Embedding,
}

/// One face followed over frames.
#[derive(Debug, Clone)]
pub struct Track {
    /// 1, 2, ... in the order the tracks started.
    pub id: u64,
    /// The box of its last match.
    pub bbox: BBox,
    /// Frame and time of its first match.
    pub first_frame: u64,
    /// Seconds.
    pub first_time: f64,
    /// Frame and time of its last match.
    pub last_frame: u64,
    /// Seconds.
    pub last_time: f64,
    /// Detections matched to it.
    pub matches: u64,
    /// Box change a frame (x, y, width, height), smoothed.
    velocity: [f32; 4],
    /// The last matched face's embedding.
    appearance: Embedding,
}

impl Track {
    /// Where it should be at `frame`, moving as it moved.
    pub fn predicted(&self, frame: u64) -> BBox {
        let dt = frame.saturating_sub(self.last_frame) as f32;
        let [vx, vy, vw, vh] = self.velocity;
        BBox {
            x: self.bbox.x + vx * dt,
            y: self.bbox.y + vy * dt,
            width: (self.bbox.width + vw * dt).max(1.0),
            height: (self.bbox.height + vh * dt).max(1.0),
        }
    }

    fn matched(&mut self, frame: u64, time: f64, seen: &Observation) {
        let dt = frame.saturating_sub(self.last_frame).max(1) as f32;
        let step = [
            (seen.bbox.x - self.bbox.x) / dt,
            (seen.bbox.y - self.bbox.y) / dt,
            (seen.bbox.width - self.bbox.width) / dt,
            (seen.bbox.height - self.bbox.height) / dt,
        ];
        // A fresh track has no motion to average with yet.
        let keep = if self.matches == 1 { 0.0 } else { 0.5 };
        for (v, s) in self.velocity.iter_mut().zip(step) {
            *v = keep * *v + (1.0 - keep) * s;
        }
        self.bbox = seen.bbox;
        self.appearance = seen.embedding.clone();
        self.last_frame = frame;
        self.last_time = time;
        self.matches += 1;
    }
}

/// What one detection frame did to the tracks.
#[derive(Debug, Default)]
pub struct Update {
    /// For each observation, the id of the track it now belongs to.
    pub track_of: Vec<u64>,
    /// Ids of the tracks that started with this frame.
    pub started: Vec<u64>,
    /// Tracks that ended (unmatched for too long), oldest first.
    pub ended: Vec<Track>,
}

/// The live tracks.
#[derive(Debug, Default)]
pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// No tracks yet.
    pub fn new(config: TrackerConfig) -> Self {
        Self { config, tracks: Vec::new(), next_id: 1 }
    }

    /// The live tracks.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// One track by id.
    pub fn track(&self, id: u64) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Ends the tracks unmatched for longer than the gap, matches the faces of a detection
    /// frame to the rest and starts tracks for the faces left over.
    pub fn update(&mut self, frame: u64, time: f64, seen: &[Observation]) -> Update {
        // A track already past its gap has ended: a face in its place now is someone new.
        let ended = self.expire(time);
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            let predicted = track.predicted(frame);
            for (o, face) in seen.iter().enumerate() {
                let iou = predicted.iou(&face.bbox);
                let similarity = track.appearance.cosine(&face.embedding).unwrap_or(0.0);
                let [px, py] = predicted.center();
                let [fx, fy] = face.bbox.center();
                let near = (px - fx).hypot(py - fy) <= NEAR_WIDTHS * predicted.width.max(face.bbox.width);
                if iou >= self.config.min_iou || (near && similarity >= self.config.min_similarity) {
                    pairs.push((iou + similarity.max(0.0), t, o));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of: Vec<Option<u64>> = vec![None; seen.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, t, o) in pairs {
            if taken[t] || track_of[o].is_some() {
                continue;
            }
            taken[t] = true;
            track_of[o] = Some(self.tracks[t].id);
            self.tracks[t].matched(frame, time, &seen[o]);
        }
        let mut started = Vec::new();
        for (o, face) in seen.iter().enumerate() {
            if track_of[o].is_none() {
                let id = self.next_id;
                self.next_id += 1;
                self.tracks.push(Track {
                    id,
                    bbox: face.bbox,
                    first_frame: frame,
                    first_time: time,
                    last_frame: frame,
                    last_time: time,
                    matches: 1,
                    velocity: [0.0; 4],
                    appearance: face.embedding.clone(),
                });
                track_of[o] = Some(id);
                started.push(id);
            }
        }
        Update {
            track_of: track_of.into_iter().map(|t| t.expect("BUG: every face has a track")).collect(),
            started,
            ended,
        }
    }

    /// Ends the tracks unmatched for longer than the gap at `time`.
    pub fn expire(&mut self, time: f64) -> Vec<Track> {
        let gap = self.config.max_gap_s;
        let (ended, live) = std::mem::take(&mut self.tracks).into_iter().partition(|t| time - t.last_time > gap);
        self.tracks = live;
        ended
    }

    /// Ends every track (the source ended or the watch stopped).
    pub fn end_all(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, embedding: [f32; 2]) -> Observation {
        Observation {
            bbox: BBox { x, y: 100.0, width: 80.0, height: 100.0 },
            embedding: Embedding::normalized(embedding.to_vec()),
        }
    }

    #[test]
    fn two_faces_crossing_keep_their_tracks_by_motion_and_appearance() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        let (a, b) = ([1.0, 0.0], [0.0, 1.0]);
        let first = tracker.update(0, 0.0, &[face(100.0, a), face(600.0, b)]);
        assert_eq!(first.started, vec![1, 2]);
        // Walking towards each other 60 px a detection; at frame 12 they have swapped sides
        // (boxes 90 px apart cannot overlap their predictions less than each other's).
        for step in 1..=8u64 {
            let shift = 60.0 * step as f32;
            let update = tracker.update(step * 3, step as f64 * 0.1, &[face(600.0 - shift, b), face(100.0 + shift, a)]);
            assert_eq!(update.track_of, vec![2, 1], "step {step}");
            assert!(update.started.is_empty() && update.ended.is_empty());
        }
    }

    #[test]
    fn a_face_that_jumps_further_than_its_width_is_followed_by_appearance_only_when_it_looks_the_same() {
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(0, 0.0, &[face(100.0, [1.0, 0.0])]);
        // 150 px: no overlap, within two widths; the same face.
        assert_eq!(tracker.update(3, 0.1, &[face(250.0, [0.95, 0.1])]).track_of, vec![1]);
        // The same jump by another face: a new track.
        let mut tracker = Tracker::new(TrackerConfig::default());
        tracker.update(0, 0.0, &[face(100.0, [1.0, 0.0])]);
        let update = tracker.update(3, 0.1, &[face(250.0, [0.0, 1.0])]);
        assert_eq!(update.started, vec![2]);
    }

    #[test]
    fn a_track_ends_after_the_gap_and_not_before() {
        let mut tracker = Tracker::new(TrackerConfig { max_gap_s: 1.0, ..TrackerConfig::default() });
        tracker.update(0, 0.0, &[face(100.0, [1.0, 0.0])]);
        assert!(tracker.update(25, 1.0, &[]).ended.is_empty());
        let ended = tracker.update(26, 1.04, &[]).ended;
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].id, ended[0].matches), (1, 1));
        assert!(tracker.tracks().is_empty());
    }

    #[test]
    fn a_face_where_a_track_ended_starts_a_new_track() {
        // Someone steps where another was last seen, just after the gap: not the same track.
        let mut tracker = Tracker::new(TrackerConfig { max_gap_s: 1.0, ..TrackerConfig::default() });
        tracker.update(0, 0.0, &[face(100.0, [1.0, 0.0])]);
        let update = tracker.update(26, 1.04, &[face(100.0, [0.0, 1.0])]);
        assert_eq!(update.ended.iter().map(|t| t.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!((update.started.clone(), update.track_of), (vec![2], vec![2]));
    }
}
