import Foundation
import Testing
import YardModel

/// The traffic state in the admin API's style (snake_case, RFC 3339) and in the stores'
/// (the names earlier versions wrote, so a mixed fleet keeps reading it); both are read.
@Suite struct TrafficStateCoding {
    let state = TrafficState(activeTrack: "blue").flipped

    @Test func theAPIFormIsSnakeCaseWithRFC3339Times() throws {
        let text = String(decoding: try JSONEncoder().encode(state), as: UTF8.self)
        for key in ["\"active_track\"", "\"canary_permille\"", "\"plan_permille\"", "\"changed_at\":\"2026-12-07T05:35:43.000Z\"", "\"from_track\":\"blue\"", "\"to_track\":\"green\""] {
            #expect(text.contains(key), "\(key) in \(text)")
        }
        #expect(try JSONDecoder().decode(TrafficState.self, from: Data(text.utf8)) == state)
    }

    @Test func theStoredFormIsTheOneEarlierVersionsWroteAndBothAreRead() throws {
        let encoder = JSONEncoder()
        encoder.userInfo[.storedDocument] = true
        let stored = String(decoding: try encoder.encode(state), as: UTF8.self)
        #expect(stored.contains("\"activeTrack\":\"green\"") && stored.contains("\"timeUnix\":1796621743"), "\(stored)")
        #expect(try JSONDecoder().decode(TrafficState.self, from: Data(stored.utf8)) == state)
        // A document an earlier version wrote (no from/to tracks).
        let earlier = #"{"activeTrack":"green","canaryPermille":0,"history":[{"action":"flip blue -> green","revision":1,"timeUnix":1796621743,"who":"ci","why":""}],"plan":[50,250,500,1000],"revision":1}"#
        let read = try JSONDecoder().decode(TrafficState.self, from: Data(earlier.utf8))
        #expect(read.activeTrack == "green" && read.revision == 1 && read.history.first?.fromTrack == nil)
    }
}

extension TrafficState {
    fileprivate var flipped: TrafficState {
        (try? applying(.flip(to: "green"), tracks: ["blue", "green"], who: "ci", why: "", timeUnix: 1_796_621_743)) ?? self
    }
}
