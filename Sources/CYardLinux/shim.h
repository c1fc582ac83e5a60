#ifndef C_YARD_LINUX_SHIM_H
#define C_YARD_LINUX_SHIM_H
/* Swift's Glibc module does not export <sys/epoll.h> or <sys/eventfd.h>, and accept4,
   splice and pipe2 need _GNU_SOURCE, which the prebuilt Glibc module was not compiled with. This
   header-only module declares them; nothing extra is linked (they are in libc). */
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <errno.h>
#include <string.h>

int sched_getaffinity(pid_t pid, size_t cpusetsize, void *mask);

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
ssize_t splice(int fd_in, long long *off_in, int fd_out, long long *off_out, size_t len, unsigned int flags);
/* pipe2 (O_NONBLOCK | O_CLOEXEC in one call) is _GNU_SOURCE too: the TCP tunnels' splice pipes. */
int pipe2(int pipefd[2], int flags);
/* The takeover restart (SIGUSR2) starts the new process with only stdin/out/err: any other
   descriptor this process inherited without close-on-exec (a supervisor's pipe or socket)
   must not live on in it. glibc >= 2.34 declares this under _GNU_SOURCE only. */
#include <spawn.h>
int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *actions, int from);
/* <malloc.h> is not in Swift's Glibc module: a worker returns freed heap pages to the system
   after a burst of connections ends (glibc keeps them otherwise). */
int malloc_trim(size_t pad);

#ifndef SPLICE_F_MOVE
#define SPLICE_F_MOVE 1
#define SPLICE_F_NONBLOCK 2
#define SPLICE_F_MORE 4
#endif

/* errno is a macro over a thread-local; Swift's Glibc exposes it, but a direct accessor
   keeps the hot path free of the overlay's indirection. */
static inline int yard_errno(void) { return errno; }

/* Number of CPUs this process may run on (sched_getaffinity), for the default loop count.
   CPU_COUNT needs _GNU_SOURCE, which the Glibc module was built without: count the bits. */
static inline int yard_available_cpus(void) {
    unsigned long bits[16];
    memset(bits, 0, sizeof(bits));
    if (sched_getaffinity(0, sizeof(bits), (void *)bits) != 0) return 1;
    int n = 0;
    for (unsigned i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) n += __builtin_popcountl(bits[i]);
    return n > 0 ? n : 1;
}
#endif
