// ringlb-no-uring: runs a command under a seccomp filter that makes the io_uring system calls
// fail with EPERM, the way Docker 25+'s and containerd 2.0's default profiles do. Used by the
// integration tests to prove that ringlb falls back to epoll there.
//
//   ringlb-no-uring [--errno ENOSYS] -- COMMAND [ARGS...]
#include <seccomp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string_view>

int main(int argc, char** argv) {
    int err = EPERM;
    int i = 1;
    for (; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg == "--errno" && i + 1 < argc) {
            std::string_view name = argv[++i];
            if (name == "ENOSYS")
                err = ENOSYS;
            else if (name == "EPERM")
                err = EPERM;
            else {
                std::fprintf(stderr, "ringlb-no-uring: --errno takes EPERM or ENOSYS\n");
                return 2;
            }
        } else {
            std::fprintf(stderr, "usage: ringlb-no-uring [--errno EPERM|ENOSYS] -- COMMAND...\n");
            return 2;
        }
    }
    if (i >= argc) {
        std::fprintf(stderr, "usage: ringlb-no-uring [--errno EPERM|ENOSYS] -- COMMAND...\n");
        return 2;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == nullptr) {
        std::fprintf(stderr, "ringlb-no-uring: seccomp_init failed\n");
        return 1;
    }
    int rc = 0;
    for (const char* name : {"io_uring_setup", "io_uring_enter", "io_uring_register"}) {
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: nothing to block
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0);
        if (rc != 0) break;
    }
    if (rc == 0) rc = seccomp_load(ctx);  // sets no_new_privs unless we are privileged
    seccomp_release(ctx);
    if (rc != 0) {
        std::fprintf(stderr, "ringlb-no-uring: cannot install the filter: %s\n",
                     std::strerror(-rc));
        return 1;
    }
    execvp(argv[i], argv + i);
    std::fprintf(stderr, "ringlb-no-uring: exec %s: %s\n", argv[i], std::strerror(errno));
    return 127;
}
