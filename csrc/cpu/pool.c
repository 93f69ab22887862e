/* A persistent pthread pool: workers spin briefly, then sleep on a condition variable, between jobs.
 * One job runs at a time (a context is driven from one thread); the caller works as worker 0.
 * No OpenMP, so the embedded library needs nothing beyond libc on the user's machine.
 *
 * Workers JOIN a job: one atomic word holds the job's generation, a closed flag and the count of
 * workers that joined. When the caller has run out of tasks it closes the job and waits only for the
 * workers that joined — never for a sleeping or descheduled one that would arrive to find no work. So
 * a small op costs no more than the caller doing it alone, even on a loaded machine. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "internal.h"

/* About 10–50 µs of polling before a worker sleeps: long enough to catch the next op of a layer,
 * short enough not to steal a core from Go code running between ops. */
#define SPIN_ROUNDS 2000

#define GEN(s) ((uint32_t)((s) >> 32))
#define CLOSED ((uint64_t)1 << 31)
#define JOINED(s) ((int)((s) & 0x7fffffffu))

struct serl_pool {
    int n; /* workers including the caller */
    pthread_t th[SERL_MAX_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    _Atomic uint64_t state; /* generation << 32 | CLOSED | joined */
    _Atomic int64_t next;
    _Atomic int finished; /* joined workers done with the current job */
    _Atomic int stop;
    serl_task_fn fn;
    void *arg;
    int64_t n_tasks;
};

typedef struct {
    serl_pool *p;
    int id;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(serl_pool *p, int id) {
    int64_t n = p->n_tasks;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n) break;
        p->fn(p->arg, i, id);
    }
}

/* join adds the worker to job g unless the job has moved on or closed. */
static int join(serl_pool *p, uint32_t g) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    while (GEN(s) == g && !(s & CLOSED)) {
        if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel, memory_order_acquire)) return 1;
    }
    return 0;
}

static void *worker_main(void *v) {
    worker_arg *wa = (worker_arg *)v;
    serl_pool *p = wa->p;
    int id = wa->id;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = GEN(atomic_load_explicit(&p->state, memory_order_acquire));
        for (int s = 0; g == seen && s < SPIN_ROUNDS; s++) {
            cpu_relax();
            g = GEN(atomic_load_explicit(&p->state, memory_order_acquire));
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = GEN(atomic_load(&p->state))) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        if (!join(p, g)) continue; /* the caller finished without us */
        run_tasks(p, id);
        int done = atomic_fetch_add_explicit(&p->finished, 1, memory_order_acq_rel) + 1;
        uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
        if ((s & CLOSED) && GEN(s) == g && done == JOINED(s)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

serl_pool *serl_pool_create(int threads) {
    if (threads < 1) threads = 1;
    if (threads > SERL_MAX_THREADS) threads = SERL_MAX_THREADS;
    serl_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->n = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof(*wa));
        if (!wa) {
            p->n = i;
            break;
        }
        wa->p = p;
        wa->id = i;
        /* Block every signal in workers: signals belong to the Go runtime's threads. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&p->th[i], NULL, worker_main, wa);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            free(wa);
            p->n = i;
            break;
        }
    }
    return p;
}

void serl_pool_destroy(serl_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->state, (uint64_t)1 << 32);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void serl_pool_run(serl_pool *p, int64_t n_tasks, serl_task_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (p->n == 1 || n_tasks == 1) {
        for (int64_t i = 0; i < n_tasks; i++) fn(arg, i, 0);
        return;
    }
    /* Every worker that joined the previous job has finished it, so these plain writes are safe;
     * the release below publishes them with the new generation. */
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    uint32_t g = GEN(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->state, (uint64_t)g << 32, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    /* Close the job: from now on no worker can join it. */
    uint64_t s = atomic_fetch_or_explicit(&p->state, CLOSED, memory_order_acq_rel);
    int joined = JOINED(s);
    for (int i = 0; atomic_load_explicit(&p->finished, memory_order_acquire) != joined && i < SPIN_ROUNDS * 8; i++) cpu_relax();
    if (atomic_load_explicit(&p->finished, memory_order_acquire) != joined) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->finished) != joined) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void serl_parallel(serl_ctx *ctx, int64_t n_tasks, serl_task_fn fn, void *arg) {
    serl_pool_run(ctx->pool, n_tasks, fn, arg);
}
