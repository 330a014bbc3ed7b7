/* SPDX-License-Identifier: MIT */
/*
 * progress.c — a terminal progress bar on stderr.
 *
 * On a TTY: one line redrawn with \r at most 10 times a second, showing a
 * bar, done/total, percent, rate and ETA. Elsewhere (CI logs, pipes): a plain
 * line at every 10% step, so logs stay short and readable.
 */
#include <stdio.h>
#include <unistd.h>

#include "imgsim/imgsim.h"

struct ims_progress {
    char label[64];
    uint64_t total, done;
    double t0, t_last;
    int tty;
    int last_decile;
};

ims_progress *ims_progress_new(const char *label, uint64_t total)
{
    ims_progress *p = ims_calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->t0 = p->t_last = ims_now();
    p->tty = isatty(STDERR_FILENO);
    p->last_decile = -1;
    return p;
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else
        snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

static void draw(ims_progress *p, double now, int final)
{
    double el = now - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    double frac = p->total ? (double)p->done / (double)p->total : 0;
    if (frac > 1)
        frac = 1;
    char eta[16], ela[16];
    fmt_time(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : -1);
    fmt_time(ela, sizeof ela, el);
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %llu/%llu %3d%% %.1f/s %s%s%s", p->label, bar,
                (unsigned long long)p->done, (unsigned long long)p->total, (int)(frac * 100),
                rate, final ? "in " : "ETA ", final ? ela : eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "%s: %llu/%llu (%d%%) %.1f/s elapsed %s\n", p->label,
                (unsigned long long)p->done, (unsigned long long)p->total, (int)(frac * 100),
                rate, ela);
    }
    fflush(stderr);
}

void ims_progress_update(ims_progress *p, uint64_t done)
{
    if (!p)
        return;
    p->done = done;
    double now = ims_now();
    if (p->tty) {
        if (now - p->t_last >= 0.1) {
            p->t_last = now;
            draw(p, now, 0);
        }
    } else {
        int dec = p->total ? (int)(10 * done / p->total) : 0;
        if (dec != p->last_decile && dec < 10) {
            p->last_decile = dec;
            if (dec > 0)
                draw(p, now, 0);
        }
    }
}

void ims_progress_add(ims_progress *p, uint64_t n)
{
    if (p)
        ims_progress_update(p, p->done + n);
}

void ims_progress_finish(ims_progress *p)
{
    if (!p)
        return;
    draw(p, ims_now(), 1);
    ims_free(p);
}
