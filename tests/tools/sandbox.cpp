// ringlb-sandbox: runs a command under the seccomp filters that the hardening options of
// deploy/systemd/ringlb.service make systemd install, so tests/deploy/systemd_test.sh can show
// that ringlb (on io_uring) still works under them on a machine without systemd as PID 1. Each
// option mirrors systemd 252's src/shared/seccomp-util.c:
//
//   --deny NAME,...          SystemCallFilter=~...: these calls kill the process (SIGSYS), as
//                            systemd does without SystemCallErrorNumber=
//   --families N,...         RestrictAddressFamilies=: socket() with another domain fails with
//                            EAFNOSUPPORT
//   --deny-write-execute     MemoryDenyWriteExecute=yes: mmap with PROT_WRITE|PROT_EXEC,
//                            mprotect/pkey_mprotect with PROT_EXEC, shmat with SHM_EXEC: EPERM
//   --restrict-namespaces    RestrictNamespaces=yes: unshare, setns and clone with a CLONE_NEW*
//                            flag: EPERM; clone3: ENOSYS (its flags cannot be inspected, so
//                            libc falls back to clone)
//   --lock-personality       LockPersonality=yes: personality() other than a query: EPERM
//   --restrict-realtime      RestrictRealtime=yes: SCHED_FIFO, SCHED_RR, SCHED_DEADLINE: EPERM
//
// SystemCallArchitectures=native holds anyway: libseccomp kills calls of other ABIs by default.
//
//   ringlb-sandbox [OPTIONS] -- COMMAND [ARGS...]
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::vector<std::string> split(std::string_view list) {
    std::vector<std::string> out;
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        if (!item.empty()) out.emplace_back(item);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return out;
}

int usage() {
    std::fprintf(stderr,
                 "usage: ringlb-sandbox [--deny NAME,...] [--families N,...] "
                 "[--deny-write-execute] [--restrict-namespaces] [--lock-personality] "
                 "[--restrict-realtime] -- COMMAND...\n");
    return 2;
}

// One rule; a call this libseccomp does not know on this architecture is skipped (nothing to
// filter).
bool add(scmp_filter_ctx ctx, uint32_t action, const char* name,
         std::vector<scmp_arg_cmp> args = {}) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return true;
    int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()),
                                    args.empty() ? nullptr : args.data());
    if (rc != 0) {
        std::fprintf(stderr, "ringlb-sandbox: rule for %s: %s\n", name, std::strerror(-rc));
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> deny;
    std::set<int> families;
    bool families_set = false, write_execute = false, namespaces = false, personality = false,
         realtime = false;
    int i = 1;
    for (; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg == "--deny" && i + 1 < argc) {
            for (std::string& name : split(argv[++i])) deny.push_back(std::move(name));
        } else if (arg == "--families" && i + 1 < argc) {
            families_set = true;
            for (const std::string& n : split(argv[++i])) families.insert(std::atoi(n.c_str()));
        } else if (arg == "--deny-write-execute") {
            write_execute = true;
        } else if (arg == "--restrict-namespaces") {
            namespaces = true;
        } else if (arg == "--lock-personality") {
            personality = true;
        } else if (arg == "--restrict-realtime") {
            realtime = true;
        } else {
            return usage();
        }
    }
    if (i >= argc) return usage();

    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == nullptr) {
        std::fprintf(stderr, "ringlb-sandbox: seccomp_init failed\n");
        return 1;
    }
    bool ok = true;
    for (const std::string& name : deny) ok = ok && add(ctx, SCMP_ACT_KILL_PROCESS, name.c_str());
    if (families_set) {
        for (int af = 0; af < AF_MAX && ok; ++af) {
            if (families.count(af)) continue;
            ok = add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket",
                     {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(af))});
        }
        ok = ok && add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket",
                       {SCMP_A0(SCMP_CMP_GE, static_cast<scmp_datum_t>(AF_MAX))});
    }
    if (write_execute) {
        const scmp_datum_t wx = PROT_WRITE | PROT_EXEC;
        for (const char* name : {"mmap", "mmap2"})
            ok = ok && add(ctx, SCMP_ACT_ERRNO(EPERM), name, {SCMP_A2(SCMP_CMP_MASKED_EQ, wx, wx)});
        for (const char* name : {"mprotect", "pkey_mprotect"})
            ok = ok && add(ctx, SCMP_ACT_ERRNO(EPERM), name,
                           {SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC)});
        ok = ok && add(ctx, SCMP_ACT_ERRNO(EPERM), "shmat",
                       {SCMP_A2(SCMP_CMP_MASKED_EQ, SHM_EXEC, SHM_EXEC)});
    }
    if (namespaces) {
        const scmp_datum_t new_ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
        ok = ok && add(ctx, SCMP_ACT_ERRNO(EPERM), "unshare") &&
             add(ctx, SCMP_ACT_ERRNO(EPERM), "setns") && add(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3");
        // clone's flags are its first argument on x86-64 and arm64 (the second on s390).
        for (scmp_datum_t bit = 1; bit != 0 && ok; bit <<= 1)
            if (new_ns & bit)
                ok = add(ctx, SCMP_ACT_ERRNO(EPERM), "clone",
                         {SCMP_A0(SCMP_CMP_MASKED_EQ, bit, bit)});
    }
    if (personality)
        ok = ok && add(ctx, SCMP_ACT_ERRNO(EPERM), "personality",
                       {SCMP_A0(SCMP_CMP_NE, static_cast<scmp_datum_t>(0xffffffffu))});
    if (realtime) {
        for (scmp_datum_t policy : {SCHED_FIFO, SCHED_RR, 6 /* SCHED_DEADLINE */})
            ok = ok && add(ctx, SCMP_ACT_ERRNO(EPERM), "sched_setscheduler",
                           {SCMP_A1(SCMP_CMP_MASKED_EQ,
                                    ~static_cast<scmp_datum_t>(SCHED_RESET_ON_FORK), policy)});
    }
    int rc = ok ? seccomp_load(ctx) : -EINVAL;  // sets no_new_privs unless we are privileged
    seccomp_release(ctx);
    if (rc != 0) {
        std::fprintf(stderr, "ringlb-sandbox: cannot install the filter: %s\n", std::strerror(-rc));
        return 1;
    }
    execvp(argv[i], argv + i);
    std::fprintf(stderr, "ringlb-sandbox: exec %s: %s\n", argv[i], std::strerror(errno));
    return 127;
}
