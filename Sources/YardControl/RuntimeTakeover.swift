#if canImport(Glibc)
import Glibc
#endif
import CYardLinux
import Foundation
import YardIO
import YardProxy

/// How `switchyard run` takes over from a running process and offers its own sockets to
/// the next one (Takeover.swift has the exchange).
public struct TakeoverSettings: Sendable {
    /// Take the listening sockets of the process offering at the socket (`run --takeover`);
    /// with none there, bind as usual.
    public var takeOver = false
    /// Where to look for and offer the sockets; nil: `TakeoverSocket.defaultPath` for the
    /// config file; "off": neither.
    public var socketPath: String?
    /// The command line SIGUSR2 starts (executable first, `--takeover` among the
    /// arguments); nil: SIGUSR2 only logs that it does not apply.
    public var relaunch: [String]?

    public init(takeOver: Bool = false, socketPath: String? = nil, relaunch: [String]? = nil) {
        self.takeOver = takeOver
        self.socketPath = socketPath
        self.relaunch = relaunch
    }

    /// The command line that starts this program again as `run --takeover`: the
    /// executable as it was named (resolved against the working directory and `PATH`
    /// now, so a binary replaced on disk is the one started), the same arguments.
    public static func relaunchCommand(arguments: [String] = CommandLine.arguments) -> [String]? {
        guard let name = arguments.first, !name.isEmpty else { return nil }
        let executable: String
        if name.contains("/") {
            executable = name.hasPrefix("/") ? name : FileManager.default.currentDirectoryPath + "/" + name
        } else {
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            guard let found = path.split(separator: ":").map({ "\($0)/\(name)" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
            executable = found
        }
        let rest = arguments.dropFirst().filter { $0 != "--takeover" }
        return [executable] + rest + ["--takeover"]
    }
}

extension Runtime {
    /// The socket path in use, nil when takeover is off.
    var takeoverPath: String? {
        if takeover.socketPath == "off" { return nil }
        return takeover.socketPath ?? TakeoverSocket.defaultPath(configPath: configPath)
    }

    // MARK: Taking over

    /// Set by SIGUSR2 in the environment of the process it starts: the pid that process
    /// must take over from (no other, and not none).
    static let predecessorVariable = "SWITCHYARD_TAKEOVER_FROM"

    /// With `--takeover`: the running process's listening sockets (its workers keep
    /// accepting on them until this process is ready). Nothing offers: none, and a log
    /// line; but a process started by SIGUSR2 fails instead of running beside its parent.
    func takeOverSockets() throws(TakeoverError) -> (TakeoverClient?, InheritedSockets) {
        guard takeover.takeOver, let path = takeoverPath else { return (nil, InheritedSockets()) }
        let predecessor = ProcessInfo.processInfo.environment[Self.predecessorVariable].flatMap { Int32($0) }
        guard let client = try TakeoverClient.connect(path: path, expecting: predecessor) else {
            if let predecessor {
                throw .protocolError("pid \(predecessor), whose SIGUSR2 started this process, offers no sockets at \(path)")
            }
            logger.info("takeover: no running process offers its sockets at \(path); binding the listeners")
            return (nil, InheritedSockets())
        }
        let sockets = try client.receiveSockets()
        logger.info("takeover: received \(sockets.count) listening socket(s) from pid \(client.oldPID)")
        return (client, InheritedSockets(sockets))
    }

    /// Closes the sockets the new config has no listener for (the port closes once the
    /// old process has drained), naming each listener once.
    func closeUnclaimed(_ inherited: InheritedSockets) {
        var named = Set<String>()
        for socket in inherited.closeUnclaimed() where named.insert("\(socket.name) \(socket.address)").inserted {
            logger.info("takeover: \(socket.name == ListeningSocket.adminName ? "the admin API" : "listener '\(socket.name)'") on \(socket.address) is not in the new config; closed")
        }
    }

    /// Tells the old process this one serves (it then drains, and tells systemd this
    /// process is the service's main one), or, without one, tells systemd it is ready.
    func finishTakeover(from predecessor: TakeoverClient?) {
        guard let predecessor else {
            SystemdNotify.notify(.ready)
            return
        }
        do {
            try predecessor.confirmReady()
            logger.info("takeover: pid \(predecessor.oldPID) drains; pid \(getpid()) serves")
        } catch {
            // It may have died meanwhile: this process serves either way.
            logger.warning("\(error); serving anyway")
            SystemdNotify.notify(.ready)
        }
    }

    // MARK: Offering

    /// Offers this process's listening sockets at the takeover socket. An abstract name
    /// the old process has not released yet is retried for a moment.
    func startOffering() {
        guard let path = takeoverPath else { return }
        var lastError: TakeoverError?
        for _ in 0..<50 {
            do {
                let offer = try TakeoverOffer(
                    path: path, sockets: { [weak self] in self?.offeredSockets() ?? .failure(.refused("shutting down")) },
                    handOver: { [weak self] pid in self?.handOver(to: pid) })
                state.withLock { $0.offer = offer }
                offer.start()
                logger.info("takeover: offering the listening sockets at \(path) (switchyard run --takeover, or SIGUSR2)")
                return
            } catch {
                lastError = error
                guard case .io(_, let cause) = error, cause.errno == EADDRINUSE else { break }
                usleep(20_000)
            }
        }
        logger.warning("\(lastError.map { "\($0)" } ?? "takeover socket unavailable"); a restart through takeover is not possible for this process")
    }

    /// Duplicates of every listening socket (data plane and admin API), for the process
    /// taking over; refused once this one stops (its workers are closing theirs).
    private func offeredSockets() -> Result<[ListeningSocket], TakeoverError> {
        state.withLock { state in
            guard !state.stopping, state.handedOverTo == nil, let server = state.server else {
                return .failure(.refused("pid \(getpid()) is stopping"))
            }
            var sockets = server.listeningSockets
            if let admin = state.admin {
                sockets.append(ListeningSocket(name: ListeningSocket.adminName, address: admin.address, fd: admin.listeningDescriptor))
            }
            var copies: [ListeningSocket] = []
            for socket in sockets {
                let copy = fcntl(socket.fd, F_DUPFD_CLOEXEC, 0)
                guard copy >= 0 else {
                    for made in copies { close(made.fd) }
                    return .failure(.io("duplicate a listening socket", IOError(call: "fcntl", errno: errno)))
                }
                copies.append(ListeningSocket(name: socket.name, address: socket.address, fd: copy))
            }
            state.socketsShared = true
            return .success(copies)
        }
    }

    /// The new process `pid` serves on the sockets: stop accepting and drain.
    private func handOver(to pid: Int32) {
        let first = state.withLock { state -> Bool in
            guard state.handedOverTo == nil else { return false }
            state.handedOverTo = pid
            return true
        }
        guard first else { return }
        SystemdNotify.notify(.handedOver(to: pid))
        logger.info("takeover: pid \(pid) serves now; pid \(getpid()) stops accepting and drains")
        requestStop()
    }

    // MARK: SIGUSR2

    /// Starts the program again (`relaunchCommand`: the binary on disk now, the same
    /// config) as `run --takeover`; it takes this process's sockets over once it is ready.
    /// If it fails first, this process goes on serving and says so.
    func relaunch() {
        guard let command = takeover.relaunch, takeoverPath != nil else {
            logger.warning("SIGUSR2: restart by takeover is not available here (it needs `switchyard run` with a takeover socket)")
            return
        }
        let busy = state.withLock { state -> String? in
            if state.stopping { return "this process is stopping" }
            // Not offering (another process holds the takeover socket): the new process
            // would take that one's sockets over, not this one's.
            if state.offer == nil { return "this process does not offer its sockets at \(self.takeoverPath ?? "-") (see the warning at startup)" }
            if let pid = state.relaunched { return "pid \(pid), started by an earlier SIGUSR2, is still taking over" }
            return nil
        }
        if let busy {
            logger.warning("SIGUSR2 ignored: \(busy)")
            return
        }
        SystemdNotify.notify(.reloading)
        let pid: Int32
        do {
            pid = try Self.spawn(command, environment: [Self.predecessorVariable: String(getpid())])
        } catch {
            logger.error("SIGUSR2: cannot start \(command[0]): \(error); this process goes on serving")
            SystemdNotify.notify(.ready)
            return
        }
        state.withLock { $0.relaunched = pid }
        logger.info("SIGUSR2: started pid \(pid) (\(command.joined(separator: " "))) to take over")
        let thread = Thread { [weak self] in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            self?.relaunchedExited(pid, status: status)
        }
        thread.name = "switchyard-relaunch"
        thread.start()
    }

    private func relaunchedExited(_ pid: Int32, status: Int32) {
        let tookOver = state.withLock { state -> Bool in
            state.relaunched = nil
            return state.handedOverTo == pid
        }
        guard !tookOver else { return }
        let how = status & 0x7f == 0 ? "exited with status \((status >> 8) & 0xff)" : "was killed by signal \(status & 0x7f)"
        logger.error("SIGUSR2: the new process (pid \(pid)) \(how) before taking over; pid \(getpid()) goes on serving, unchanged")
        SystemdNotify.notify(.ready)
    }

    /// posix_spawn with default signal handling and an empty mask (this process ignores
    /// signals its Dispatch sources handle, and ignored signals survive exec).
    static func spawn(_ command: [String], environment extra: [String: String]) throws(IOError) -> Int32 {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        // Only stdin, stdout and stderr go to the new process: a descriptor this one
        // inherited without close-on-exec (a supervisor's pipe) would otherwise keep the
        // supervisor believing this process still runs after it exited.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        var environment = ProcessInfo.processInfo.environment
        for (key, value) in extra { environment[key] = value }
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, &attributes, &argv, &envp)
        guard result == 0 else { throw IOError(call: "posix_spawn", errno: result) }
        return pid
    }
}
