/* Captured op sequences on the CPU (serl_graph_*, serl.h): while a context captures, every op's entry
 * (SERL_ENTER, internal.h) lands here instead of running: the op's argument checks run, and the op and
 * a copy of its args struct are appended to the capture. A launch calls the ops again in order, so they
 * read whatever memory holds then, as a CUDA graph replays its kernels. The CPU gains no speed from it;
 * it exists so that the engine's use of graphs, and what capture refuses, is exercised wherever the
 * tests run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../graph.h"

typedef int32_t (*graph_fn)(void *ctx, const void *a);
typedef int32_t (*graph_check)(serl_ctx *ctx, const void *a);

typedef struct {
    const char *type; /* "serl_matmul_args" */
    const char *name; /* "serl_matmul" */
    graph_fn fn;
    graph_check check; /* the op's checks that need no tensor contents (check.h) */
} graph_op;

#define SERL_GRAPH_CHECK_(op) \
    static int32_t check_##op(serl_ctx *ctx, const void *a) { return serl_check_##op(ctx, (const serl_##op##_args *)a); }
SERL_GRAPH_OPS(SERL_GRAPH_CHECK_)
#undef SERL_GRAPH_CHECK_

static const graph_op graph_ops[] = {
#define SERL_GRAPH_ENTRY_(op) {"serl_" #op "_args", "serl_" #op, (graph_fn)serl_##op, check_##op},
    SERL_GRAPH_OPS(SERL_GRAPH_ENTRY_)
#undef SERL_GRAPH_ENTRY_
};

typedef struct {
    const graph_op *op;
    void *args; /* a copy of the args struct, args->size bytes */
} graph_node;

struct serl_capture {
    graph_node *nodes;
    int n, cap;
    int32_t status; /* the first failure during capture (0: none) */
    char err[1024];
};

typedef struct {
    graph_node *nodes;
    int n;
} serl_graph;

static void free_nodes(graph_node *nodes, int n) {
    for (int i = 0; i < n; i++) free(nodes[i].args);
    free(nodes);
}

void serl_graph_spoil(serl_ctx *ctx, int32_t status) {
    serl_capture *c = ctx->cap;
    if (c->status) return;
    c->status = status;
    snprintf(c->err, sizeof c->err, "%s", ctx->err);
}

int32_t serl_graph_record(serl_ctx *ctx, const char *type, const void *args) {
    serl_capture *c = ctx->cap;
    if (c->status) return serl_fail(ctx, SERL_E_STATE, "%s: the graph capture already failed: %s", type, c->err);
    const graph_op *op = NULL;
    for (size_t i = 0; i < sizeof graph_ops / sizeof graph_ops[0]; i++)
        if (!strcmp(type, graph_ops[i].type)) op = &graph_ops[i];
    if (!op) {
        int len = (int)strlen(type) - 5; /* without "_args" */
        return serl_fail(ctx, SERL_E_STATE,
                         "%.*s cannot be captured in a graph (the context is capturing; see SERL_GRAPH_OPS in csrc/graph.h)",
                         len, type);
    }
    int32_t st = op->fn == (graph_fn)serl_copy ? serl_graph_check_copy(ctx, args) : SERL_OK;
    if (st == SERL_OK) st = op->check(ctx, args);
    if (st == SERL_DONE) return SERL_OK; /* nothing to do: nothing to replay */
    if (st != SERL_OK) return st;
    if (c->n == c->cap) {
        int ncap = c->cap ? 2 * c->cap : 64;
        graph_node *nn = realloc(c->nodes, sizeof *nn * (size_t)ncap);
        if (!nn) return serl_fail(ctx, SERL_E_NOMEM, "%s: out of host memory recording a graph", op->name);
        c->nodes = nn;
        c->cap = ncap;
    }
    uint32_t size = *(const uint32_t *)args;
    void *copy = malloc(size);
    if (!copy) return serl_fail(ctx, SERL_E_NOMEM, "%s: out of host memory recording a graph", op->name);
    memcpy(copy, args, size);
    c->nodes[c->n++] = (graph_node){op, copy};
    return SERL_OK;
}

void serl_graph_abandon(serl_ctx *ctx) {
    if (!ctx->cap) return;
    free_nodes(ctx->cap->nodes, ctx->cap->n);
    free(ctx->cap);
    ctx->cap = NULL;
}

SERL_API int32_t serl_graph_begin(void *p) {
    serl_ctx *ctx = p;
    if (!ctx) return SERL_E_ARG;
    ctx->err[0] = 0;
    if (ctx->cap) return serl_fail(ctx, SERL_E_STATE, "serl_graph_begin: the context is already capturing a graph");
    ctx->cap = calloc(1, sizeof *ctx->cap);
    if (!ctx->cap) return serl_fail(ctx, SERL_E_NOMEM, "serl_graph_begin: out of host memory");
    return SERL_OK;
}

SERL_API void *serl_graph_end(void *p) {
    serl_ctx *ctx = p;
    if (!ctx) return NULL;
    ctx->err[0] = 0;
    serl_capture *c = ctx->cap;
    if (!c) {
        serl_fail(ctx, SERL_E_STATE, "serl_graph_end: the context is not capturing a graph");
        return NULL;
    }
    ctx->cap = NULL;
    if (c->status) {
        serl_fail(ctx, c->status, "graph capture failed: %s", c->err);
        free_nodes(c->nodes, c->n);
        free(c);
        return NULL;
    }
    serl_graph *g = malloc(sizeof *g);
    if (!g) {
        serl_fail(ctx, SERL_E_NOMEM, "serl_graph_end: out of host memory");
        free_nodes(c->nodes, c->n);
        free(c);
        return NULL;
    }
    *g = (serl_graph){c->nodes, c->n};
    free(c);
    return g;
}

SERL_API int32_t serl_graph_launch(void *p, void *gp) {
    serl_ctx *ctx = p;
    if (!ctx) return SERL_E_ARG;
    ctx->err[0] = 0;
    if (ctx->cap) return serl_fail(ctx, SERL_E_STATE, "serl_graph_launch: cannot launch a graph while capturing one");
    if (!gp) return serl_fail(ctx, SERL_E_ARG, "serl_graph_launch: NULL graph");
    const serl_graph *g = gp;
    for (int i = 0; i < g->n; i++) {
        int32_t st = g->nodes[i].op->fn(ctx, g->nodes[i].args);
        if (st != SERL_OK) {
            char why[sizeof ctx->err];
            snprintf(why, sizeof why, "%s", ctx->err);
            return serl_fail(ctx, st, "graph op %d of %d (%s): %s", i + 1, g->n, g->nodes[i].op->name, why);
        }
    }
    return SERL_OK;
}

SERL_API void serl_graph_free(void *p, void *gp) {
    (void)p;
    serl_graph *g = gp;
    if (!g) return;
    free_nodes(g->nodes, g->n);
    free(g);
}
