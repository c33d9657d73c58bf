// The floor for one bulk stream through a user-space proxy: the simplest forwarder there is. One
// process per connection (iperf3 opens a control connection beside its data stream), blocking
// connect to the backend, then one epoll loop that reads up to BUF bytes from a side and writes
// them to the other, one buffer per direction. No buffer ring, no pools, no limits: what remains
// is the kernel's cost of moving bytes through a process (two copies per byte, the TCP stack,
// wakeups). tests/bench/bulk_floor.py compiles and runs it; it is not part of ringlb.
//
//   naive_forwarder LISTEN_PORT BACKEND_PORT [BUFFER_BYTES]   (127.0.0.1 only)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct direction {
    int from, to;
    char* buf;
    size_t len, off;
    int state;  // 0 open, 1 source at EOF, 2 done
};

static void forward(int client, int backend_port, size_t size) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(backend_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int backend = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (connect(backend, (struct sockaddr*)&a, sizeof a) != 0) _exit(1);
    fcntl(backend, F_SETFL, O_NONBLOCK);
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct direction d[2] = {{client, backend, malloc(size), 0, 0, 0},
                             {backend, client, malloc(size), 0, 0, 0}};
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP};
    ev.data.fd = client;
    epoll_ctl(ep, EPOLL_CTL_ADD, client, &ev);
    ev.data.fd = backend;
    epoll_ctl(ep, EPOLL_CTL_ADD, backend, &ev);
    for (;;) {
        struct epoll_event evs[4];
        epoll_wait(ep, evs, 4, -1);
        int progress = 1, done = 0;
        while (progress) {  // edge-triggered: go on until nothing moves
            progress = 0;
            done = 0;
            for (int i = 0; i < 2; i++) {
                struct direction* x = &d[i];
                if (x->state == 2) {
                    done++;
                    continue;
                }
                if (x->len == 0 && x->state == 0) {
                    ssize_t r = read(x->from, x->buf, size);
                    if (r > 0) {
                        x->len = (size_t)r;
                        x->off = 0;
                        progress = 1;
                    } else if (r == 0) {
                        x->state = 1;
                        progress = 1;
                    } else if (errno != EAGAIN) {
                        x->state = 2;
                    }
                }
                if (x->off < x->len) {
                    ssize_t w = write(x->to, x->buf + x->off, x->len - x->off);
                    if (w > 0) {
                        x->off += (size_t)w;
                        progress = 1;
                        if (x->off == x->len) x->off = x->len = 0;
                    } else if (w < 0 && errno != EAGAIN) {
                        x->state = 2;
                    }
                }
                if (x->state == 1 && x->len == 0) {
                    shutdown(x->to, SHUT_WR);
                    x->state = 2;
                }
            }
        }
        if (done == 2) _exit(0);
    }
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s LISTEN_PORT BACKEND_PORT [BUFFER_BYTES]\n", argv[0]);
        return 2;
    }
    int listen_port = atoi(argv[1]), backend_port = atoi(argv[2]);
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 65536;
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(listen_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr*)&a, sizeof a) != 0 || listen(ls, 128) != 0) {
        perror("naive_forwarder: listen");
        return 1;
    }
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (c < 0) continue;
        if (fork() == 0) {
            close(ls);
            forward(c, backend_port, size);
        }
        close(c);
    }
}
