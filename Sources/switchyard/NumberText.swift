extension Double {
    /// The value as a whole number when it is one that `Int` can hold, else as `Double`
    /// prints it (`inf`, `nan`, `1e+300`): numbers in admin API answers come from another
    /// process, and `Int(_:)` traps on the ones it cannot represent.
    var wholeText: String {
        if isFinite, abs(self) < 1e15 { return String(Int(self.rounded(.towardZero))) }
        return String(self)
    }
}
