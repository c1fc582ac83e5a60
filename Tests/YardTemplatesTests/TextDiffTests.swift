// The unified-style line diff of `switchyard render --dry-run`.

import Foundation
import Testing
import YardTemplates

@Suite struct TextDiffShowsChangedLines {
    @Test func equalTextsHaveNoDiff() {
        #expect(TextDiff.unified(old: "a\nb\n", new: "a\nb\n", oldName: "x", newName: "y") == "")
    }

    @Test func aChangedLineShowsAsRemovedAndAddedWithContext() {
        let diff = TextDiff.unified(old: "a\nb\nc\n", new: "a\nB\nc\n", oldName: "old", newName: "new")
        #expect(diff == "--- old\n+++ new\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n")
    }

    @Test func farApartChangesGetTheirOwnHunks() {
        let old = (1...20).map { "line \($0)" }.joined(separator: "\n") + "\n"
        let new = old.replacingOccurrences(of: "line 2\n", with: "line two\n").replacingOccurrences(of: "line 19\n", with: "")
        let diff = TextDiff.unified(old: old, new: new, oldName: "o", newName: "n", context: 1)
        #expect(diff == "--- o\n+++ n\n@@ -1,3 +1,3 @@\n line 1\n-line 2\n+line two\n line 3\n@@ -18,3 +18,2 @@\n line 18\n-line 19\n line 20\n")
    }
}
