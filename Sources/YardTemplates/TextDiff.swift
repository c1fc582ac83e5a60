// A line diff in unified style for `switchyard render --dry-run`: what a render would
// change in a file, or in the running pools.

/// Computes a unified-style line diff. Pure.
///
/// Threading: stateless.
public enum TextDiff {
    /// `---`/`+++` headers, then hunks with `context` lines around each change; empty
    /// when the texts are equal. Longest common subsequence on lines: O(n·m), fine for
    /// config files of a few thousand lines.
    public static func unified(old: String, new: String, oldName: String, newName: String, context: Int = 3) -> String {
        let a = lines(old), b = lines(new)
        if a == b { return "" }
        let edits = script(a, b)
        var out = "--- \(oldName)\n+++ \(newName)\n"
        // Group edits into hunks: runs of changes joined when fewer than 2·context equal lines separate them.
        var index = 0
        while index < edits.count {
            guard edits[index].kind != .same else { index += 1; continue }
            var start = index
            var kept = 0
            while start > 0, kept < context, edits[start - 1].kind == .same { start -= 1; kept += 1 }
            var end = index
            var quiet = 0
            while end < edits.count {
                if edits[end].kind == .same { quiet += 1; if quiet > 2 * context { break } } else { quiet = 0 }
                end += 1
            }
            var trailing = 0
            while trailing < end - index, edits[end - 1 - trailing].kind == .same { trailing += 1 }
            end -= max(0, trailing - context)
            let hunk = edits[start..<end]
            let oldStart = (hunk.first?.oldLine ?? 0) + 1, newStart = (hunk.first?.newLine ?? 0) + 1
            let oldCount = hunk.filter { $0.kind != .added }.count, newCount = hunk.filter { $0.kind != .removed }.count
            out += "@@ -\(oldStart),\(oldCount) +\(newStart),\(newCount) @@\n"
            for edit in hunk {
                switch edit.kind {
                case .same: out += " \(edit.text)\n"
                case .removed: out += "-\(edit.text)\n"
                case .added: out += "+\(edit.text)\n"
                }
            }
            index = end
        }
        return out
    }

    // MARK: Edit script

    struct Edit: Equatable {
        enum Kind { case same, removed, added }
        var kind: Kind
        var text: String
        /// 0-based positions in the old and new text where this edit sits.
        var oldLine: Int
        var newLine: Int
    }

    static func script(_ a: [String], _ b: [String]) -> [Edit] {
        var lengths = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                lengths[i][j] = a[i] == b[j] ? lengths[i + 1][j + 1] + 1 : max(lengths[i + 1][j], lengths[i][j + 1])
            }
        }
        var edits: [Edit] = []
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if i < a.count, j < b.count, a[i] == b[j] {
                edits.append(Edit(kind: .same, text: a[i], oldLine: i, newLine: j)); i += 1; j += 1
            } else if i < a.count, j == b.count || lengths[i + 1][j] >= lengths[i][j + 1] {
                edits.append(Edit(kind: .removed, text: a[i], oldLine: i, newLine: j)); i += 1
            } else {
                edits.append(Edit(kind: .added, text: b[j], oldLine: i, newLine: j)); j += 1
            }
        }
        return edits
    }

    private static func lines(_ text: String) -> [String] {
        var result = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if result.last == "" { result.removeLast() }
        return result
    }
}
