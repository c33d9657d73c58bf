#pragma once

// dnsmasq (Debian dnsmasq-base) as a real DNS server for tests: authoritative for ringlb.test on
// a loopback port, answering from a hosts file the test rewrites (and SIGHUPs it to reread).

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/address.hpp"
#include "tests/integration/testkit.hpp"

namespace ringlb::testkit {

inline std::string dnsmasq_binary() {
    for (const char* path : {"/usr/sbin/dnsmasq", "/usr/local/sbin/dnsmasq", "/usr/bin/dnsmasq"})
        if (::access(path, X_OK) == 0) return path;
    return "";
}

inline size_t count_of(const std::string& haystack, const std::string& needle) {
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + 1))
        ++n;
    return n;
}

// dnsmasq authoritative for ringlb.test from `hosts` (names there not listed: NXDOMAIN), with
// no upstream (any other name: REFUSED), every answer with TTL `ttl` seconds.
class Dnsmasq {
  public:
    // "" once it runs, else why not.
    std::string start(const std::string& hosts_text, int ttl = 7) {
        std::string binary = dnsmasq_binary();
        if (binary.empty()) return "dnsmasq is not installed (Debian: dnsmasq-base)";
        write_file(hosts_path(), hosts_text);
        // As whoever we are: dnsmasq started as root would otherwise switch to nobody, who can
        // neither reread the private hosts file on SIGHUP nor needs to.
        const passwd* user = ::getpwuid(::geteuid());
        const group* grp = ::getgrgid(::getegid());
        std::string why;
        for (int attempt = 0; attempt < 3; ++attempt) {  // a port may be taken for UDP
            port_ = free_port();
            std::vector<std::string> argv = {binary,
                                             "--keep-in-foreground",
                                             "--conf-file=/dev/null",
                                             "--pid-file=",
                                             "--no-resolv",
                                             "--no-hosts",
                                             "--no-dhcp-interface=lo",
                                             "--listen-address=127.0.0.1",
                                             "--bind-interfaces",
                                             "--port=" + std::to_string(port_),
                                             "--addn-hosts=" + hosts_path(),
                                             "--local=/ringlb.test/",
                                             "--txt-record=text-only.ringlb.test,no address here",
                                             "--cname=alias.ringlb.test,web.ringlb.test",
                                             "--local-ttl=" + std::to_string(ttl),
                                             "--log-queries",
                                             "--log-facility=-"};
            if (user) argv.push_back(std::string("--user=") + user->pw_name);
            if (grp) argv.push_back(std::string("--group=") + grp->gr_name);
            if (!process_.spawn(argv, log_path(), &why)) return why;
            if (wait_for_reads(1)) return "";
            process_.kill_and_reap();
            why = "dnsmasq did not start: " + read_file(log_path());
        }
        return why;
    }

    uint16_t port() const { return port_; }
    common::Address address() const {
        return *common::parse_address("127.0.0.1:" + std::to_string(port_));
    }
    std::string log() const { return read_file(log_path()); }
    Subprocess& process() { return process_; }

    // Rewrites the hosts file and waits until dnsmasq has reread it.
    ::testing::AssertionResult replace_hosts(const std::string& hosts_text) {
        size_t reads = count_of(log(), read_line());
        write_file(hosts_path(), hosts_text);
        if (::kill(process_.pid(), SIGHUP) != 0)
            return ::testing::AssertionFailure() << "kill(SIGHUP): " << std::strerror(errno);
        if (!wait_for_reads(reads + 1))
            return ::testing::AssertionFailure()
                   << "dnsmasq did not reread " << hosts_path() << ":\n"
                   << log();
        return ::testing::AssertionSuccess();
    }

  private:
    std::string hosts_path() const { return dir_.file("hosts"); }
    std::string log_path() const { return dir_.file("dnsmasq.log"); }
    // dnsmasq logs this after (re)reading the file, its sockets already bound.
    std::string read_line() const { return "read " + hosts_path() + " - "; }

    bool wait_for_reads(size_t reads) {
        auto deadline = Clock::now() + Millis(5000);
        while (Clock::now() < deadline) {
            if (count_of(log(), read_line()) >= reads) return true;
            if (!process_.running()) return false;
            std::this_thread::sleep_for(Millis(10));
        }
        return false;
    }

    TempDir dir_;
    Subprocess process_;
    uint16_t port_ = 0;
};

}  // namespace ringlb::testkit
