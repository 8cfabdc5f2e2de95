// signetd: the Signet appliance daemon.
//   signetd --config /etc/signet/signetd.toml [flags]
// Prints the URL, the TLS certificate fingerprint and (first run) the one-time setup token, then
// serves until SIGTERM/SIGINT, when it finishes in-flight requests within the grace period.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "appliance.hpp"
#include "config.hpp"
#include "sanitizer_defaults.hpp"

namespace {

// systemd readiness protocol (sd_notify) without libsystemd: one datagram to $NOTIFY_SOCKET.
void sd_notify(const char* state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::size_t n = std::strlen(path);
    if (n >= sizeof addr.sun_path) return;
    std::memcpy(addr.sun_path, path, n);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    (void)::sendto(fd, state, std::strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n));
    ::close(fd);
}

int usage(int code) {
    std::fprintf(code ? stderr : stdout,
                 "usage: signetd --config FILE [flags]\n"
                 "Flags override the configuration file (docs/config.md):\n%s"
                 "  --help                   this text\n",
                 signet::daemon::flags_help().c_str());
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    std::string config_file;
    std::vector<std::string> flags;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h") return usage(0);
        if (a == "--config") {
            if (i + 1 >= argc) return usage(2);
            config_file = argv[++i];
        } else {
            flags.push_back(a);
        }
    }
    signet::Result<signet::daemon::Config> config =
        config_file.empty() ? signet::Result<signet::daemon::Config>(signet::daemon::Config{})
                            : signet::daemon::load_config(config_file);
    if (!config) {
        std::fprintf(stderr, "signetd: %s\n", config.error().message().c_str());
        return 2;
    }
    if (auto r = signet::daemon::apply_flags(*config, flags); !r) {
        std::fprintf(stderr, "signetd: %s\n", r.error().message().c_str());
        return usage(2);
    }
    auto logger = std::make_shared<signet::StderrLogger>(config->log_level);

    // Signals are taken synchronously by this thread only; every other thread inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    auto appliance = signet::daemon::Appliance::start(*config, logger);
    if (!appliance) {
        logger->log(signet::LogLevel::error, "signetd", "start_failed",
                    {{"error", appliance.error().message()}});
        std::fprintf(stderr, "signetd: cannot start: %s\n", appliance.error().message().c_str());
        return 1;
    }
    const auto& rep = (*appliance)->report();
    std::printf("signetd listening on %s\n", rep.url.c_str());
    if (!rep.tls_fingerprint.empty())
        std::printf("TLS certificate SHA-256: %s\n", rep.tls_fingerprint.c_str());
    if (rep.setup_token) {
        std::printf(
            "One-time setup token: %s\n"
            "  (also in %s; create the first admin with:\n"
            "   signetctl setup --setup-token-file %s --name admin --save-token FILE)\n",
            rep.setup_token->c_str(), config->setup_token_path().c_str(),
            config->setup_token_path().c_str());
    }
    std::fflush(stdout);
    sd_notify("READY=1");

    int sig = 0;
    sigwait(&stop_signals, &sig);
    logger->log(signet::LogLevel::info, "signetd", "stopping", {{"signal", strsignal(sig)}});
    sd_notify("STOPPING=1");
    (*appliance)->stop();
    return 0;
}
