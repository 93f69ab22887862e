/* The SIMT emulator's memory-traffic models, per kernel and per source line, written to a file after
 * every grid (a Go process never runs C's exit handlers): what Nsight Compute would count on sm_80/sm_90
 * as shared-memory bank conflicts (SERL_SIMT_BANKS=FILE) and as uncoalesced global accesses
 * (SERL_SIMT_SECTORS=FILE), each against the fewest the same bytes could take. A tile layout or an
 * access pattern can so be judged here, without a GPU: planted, rows of the tensor-core attention's
 * tiles without their 16 bytes of padding take 8 wavefronts per ldmatrix phase instead of 1.
 *
 * Requests. Both models see a warp's accesses as the hardware issues them: the kernel's accesses grouped
 * by warp, instruction address, the warp's count of completed collectives (shuffles, votes, __syncwarp,
 * mma.sync, ldmatrix) and how many times each lane had reached that address since that collective;
 * exact for code the warp runs converged, approximate where lanes skip an access between collectives.
 * A block barrier or the block's end closes them. The executor reports what the instrumentation cannot
 * see: ldmatrix rows and cp.async's two ends (at issue; when the copy lands changes neither count). A
 * vector access (a uint4 or float4) stays one access (build.sh compiles the kernels without scalar
 * replacement of aggregates, as nvcc emits one load).
 *
 * Shared memory has 32 banks of 4-byte words. A request is served in phases: all 32 lanes for accesses
 * of up to 4 bytes, 16 lanes at a time for 8 bytes, 8 for 16 bytes (ldmatrix: each 8×8 matrix, the 8 rows
 * 8 lanes give, is one phase). A phase takes as many wavefronts as the most distinct words any one bank
 * holds among its accesses (lanes reading one word share it); the fewest it could take is its distinct
 * words over 32, rounded up.
 *
 * Global memory moves in 32-byte sectors: a request takes every sector any of its lanes' bytes touch
 * (lanes reading one address share it), and the fewest it could take is its distinct bytes over 32,
 * rounded up, as if they lay together and aligned. A ratio above 1 is bandwidth lost between L1 and L2
 * (a strided or misaligned warp), or the L1 lookups of a pattern whose later requests reuse the same
 * lines; device memory traffic itself is not modelled. Atomics are not counted.
 *
 * Cost: a record per access and two sorts per barrier, only when enabled (the emulated attention tests
 * take about 1.5 times as long). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "internal.h"

namespace simt {

namespace {

struct Rec {
    uintptr_t pc;
    uintptr_t addr;
    uint32_t gen; /* the warp's completed collectives at the access */
    uint32_t occ; /* the record's index in the warp's list, then how many earlier records of this lane
                   * have this pc and gen */
    uint16_t lane;
    uint16_t bytes;
};

struct Tally {
    uint64_t requests = 0, cost = 0, ideal = 0;
    void add(const Tally &t) { requests += t.requests, cost += t.cost, ideal += t.ideal; }
};

struct KernelTally {
    Tally all;
    std::map<uintptr_t, Tally> by_pc;
};

struct Model {
    const char *env, *title, *unit;
    int state = -1; /* unread, off, on */
    std::string out_path;
    std::vector<std::vector<Rec>> pending; /* per warp of the running block */
    std::map<std::string, KernelTally> tallies;
};

Model models[2] = {
    {"SERL_SIMT_BANKS", "shared-memory wavefronts (the sm_80/sm_90 bank model", "wavefronts"},
    {"SERL_SIMT_SECTORS", "global-memory 32-byte sectors (the sm_80/sm_90 sector model", "sectors"},
};
std::mutex tallies_mu; /* the executor runs one grid at a time; traffic_take may come from any thread */

/* wavefronts and the fewest possible for one phase of a request: n records of distinct lanes */
void phase(const Rec *r, int n, Tally &t) {
    uint32_t words[64];
    int nw = 0;
    for (int i = 0; i < n; i++)
        for (uintptr_t w = r[i].addr / 4; w <= (r[i].addr + r[i].bytes - 1) / 4 && nw < 64; w++) words[nw++] = (uint32_t)w;
    std::sort(words, words + nw);
    nw = (int)(std::unique(words, words + nw) - words);
    int per_bank[32] = {0}, most = 0;
    for (int i = 0; i < nw; i++) most = std::max(most, ++per_bank[words[i] % 32]);
    t.cost += (uint64_t)most;
    t.ideal += (uint64_t)((nw + 31) / 32);
}

/* one warp-wide request to shared memory: the records of one (pc, gen, occurrence), sorted by lane */
void shared_request(const Rec *r, int n, Tally &t) {
    t.requests++;
    const int bytes = r[0].bytes, per_phase = bytes <= 4 ? 32 : bytes <= 8 ? 16 : 8;
    int i = 0;
    while (i < n) {
        const int ph = r[i].lane / per_phase;
        int j = i;
        while (j < n && r[j].lane / per_phase == ph) j++;
        phase(r + i, j - i, t);
        i = j;
    }
}

/* one warp-wide request to global memory: the sectors its bytes touch */
void global_request(const Rec *r, int n, Tally &t) {
    t.requests++;
    uintptr_t bytes[32 * 16];
    int nb = 0;
    for (int i = 0; i < n; i++)
        for (uintptr_t b = r[i].addr; b < r[i].addr + r[i].bytes && nb < 32 * 16; b++) bytes[nb++] = b;
    std::sort(bytes, bytes + nb);
    nb = (int)(std::unique(bytes, bytes + nb) - bytes);
    uint64_t sectors = 0;
    for (int i = 0; i < nb; i++) sectors += i == 0 || bytes[i] / 32 != bytes[i - 1] / 32;
    t.cost += sectors;
    t.ideal += (uint64_t)((nb + 31) / 32);
}

void report(const Model &m) {
    if (m.out_path.empty() || m.tallies.empty()) return;
    const std::string tmp = m.out_path + ".tmp";
    FILE *f = fopen(tmp.c_str(), "w");
    if (!f) return;
    std::vector<std::pair<std::string, const KernelTally *>> ks;
    for (const auto &kv : m.tallies) ks.emplace_back(kv.first, &kv.second);
    std::sort(ks.begin(), ks.end(), [](const auto &a, const auto &b) {
        return a.second->all.cost - a.second->all.ideal > b.second->all.cost - b.second->all.ideal;
    });
    fprintf(f, "# %s of csrc/cudaemu/traffic.cpp); ratio = %s / fewest possible\n", m.title, m.unit);
    fprintf(f, "%-48s %12s %12s %12s %7s\n", "kernel / instruction", "requests", m.unit, "fewest", "ratio");
    for (const auto &k : ks) {
        const Tally &a = k.second->all;
        fprintf(f, "%-48.48s %12llu %12llu %12llu %6.2fx\n", k.first.c_str(), (unsigned long long)a.requests,
                (unsigned long long)a.cost, (unsigned long long)a.ideal, (double)a.cost / a.ideal);
        /* its instructions with excess cost, most first */
        std::vector<std::pair<uintptr_t, Tally>> pcs(k.second->by_pc.begin(), k.second->by_pc.end());
        std::sort(pcs.begin(), pcs.end(), [](const auto &x, const auto &y) {
            return x.second.cost - x.second.ideal > y.second.cost - y.second.ideal;
        });
        for (size_t i = 0; i < pcs.size() && i < 6 && pcs[i].second.cost > pcs[i].second.ideal; i++) {
            const Tally &p = pcs[i].second;
            fprintf(f, "    %-44.44s %12llu %12llu %12llu %6.2fx\n", source_line(pcs[i].first).c_str(), (unsigned long long)p.requests,
                    (unsigned long long)p.cost, (unsigned long long)p.ideal, (double)p.cost / p.ideal);
        }
    }
    if (fclose(f) == 0) rename(tmp.c_str(), m.out_path.c_str());
}

} // namespace

/* file:line of the instruction at pc as addr2line says from the library's debug information, with the
 * line that called it where it was inlined (the access in a shared helper, then its caller); the
 * library and offset without debug information. For the traffic models' tables and for fault messages. */
const std::string &source_line(uintptr_t pc) {
    static std::map<uintptr_t, std::string> where_cache;
    auto it = where_cache.find(pc);
    if (it != where_cache.end()) return it->second;
    std::string w;
    Dl_info di;
    if (dladdr((void *)pc, &di) && di.dli_fname) {
        const unsigned long off = (unsigned long)(pc - (uintptr_t)di.dli_fbase);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "addr2line -i -e '%s' %#lx 2>/dev/null", di.dli_fname, off - 1); /* the call, not the return */
        if (FILE *f = popen(cmd, "r")) {
            char line[400];
            for (int n = 0; n < 2 && fgets(line, sizeof line, f); n++) {
                std::string l(line, strcspn(line, " \n")); /* without " (discriminator N)" */
                const size_t slash = l.rfind('/');
                if (slash != std::string::npos) l = l.substr(slash + 1);
                if (l.empty() || l[0] == '?') break;
                w += (n ? " < " : "") + l;
            }
            pclose(f);
        }
        if (w.empty()) {
            snprintf(cmd, sizeof cmd, "%s+%#lx", di.dli_fname, off);
            w = cmd;
        }
    }
    return where_cache[pc] = w;
}

bool traffic_on(Mem mem) {
    Model &m = models[mem];
    if (m.state < 0) {
        const char *e = getenv(m.env);
        if (e && *e && strcmp(e, "0")) m.out_path = e;
        m.state = !m.out_path.empty();
    }
    return m.state == 1;
}

bool traffic_any() { return traffic_on(SHARED_MEM) || traffic_on(GLOBAL_MEM); }

void traffic_enable(Mem mem, bool on) { models[mem].state = on; }

void traffic_grid_end() {
    std::lock_guard<std::mutex> lock(tallies_mu);
    for (const Model &m : models) report(m);
}

bool traffic_take(Mem mem, const char *kernel, unsigned long long *requests, unsigned long long *cost, unsigned long long *fewest) {
    std::lock_guard<std::mutex> lock(tallies_mu);
    auto &tallies = models[mem].tallies;
    auto it = tallies.find(kernel);
    if (it == tallies.end()) return false;
    *requests = it->second.all.requests, *cost = it->second.all.cost, *fewest = it->second.all.ideal;
    tallies.erase(it);
    return true;
}

void traffic_block_begin(unsigned warps) {
    for (Model &m : models) {
        m.pending.resize(warps);
        for (auto &p : m.pending) p.clear();
    }
}

void traffic_access(Mem mem, int warp, int lane, uintptr_t pc, const void *addr, size_t bytes) {
    if (!traffic_on(mem)) return;
    std::vector<Rec> &p = models[mem].pending[warp];
    p.push_back(Rec{pc, (uintptr_t)addr, warp_gen(warp), (uint32_t)p.size(), (uint16_t)lane, (uint16_t)bytes});
}

void traffic_flush(const char *kernel) {
    for (int mem = 0; mem < 2; mem++) {
        Model &m = models[mem];
        if (m.state != 1) continue;
        Tally t;
        std::map<uintptr_t, Tally> by_pc;
        for (auto &p : m.pending) {
            /* a lane's records at one instruction between two of the warp's collectives, in program
             * order, numbered: the k-th of every lane make one request */
            std::sort(p.begin(), p.end(), [](const Rec &a, const Rec &b) {
                return a.pc != b.pc ? a.pc < b.pc : a.gen != b.gen ? a.gen < b.gen : a.lane != b.lane ? a.lane < b.lane : a.occ < b.occ;
            });
            for (size_t i = 0, k = 0; i < p.size(); i++) {
                k = i > 0 && p[i].pc == p[i - 1].pc && p[i].gen == p[i - 1].gen && p[i].lane == p[i - 1].lane ? k + 1 : 0;
                p[i].occ = (uint32_t)k;
            }
            std::sort(p.begin(), p.end(), [](const Rec &a, const Rec &b) {
                return a.pc != b.pc ? a.pc < b.pc : a.gen != b.gen ? a.gen < b.gen : a.occ != b.occ ? a.occ < b.occ : a.lane < b.lane;
            });
            size_t i = 0;
            while (i < p.size()) {
                size_t j = i;
                while (j < p.size() && p[j].pc == p[i].pc && p[j].gen == p[i].gen && p[j].occ == p[i].occ) j++;
                Tally r;
                (mem == SHARED_MEM ? shared_request : global_request)(&p[i], (int)(j - i), r);
                by_pc[p[i].pc].add(r);
                t.add(r);
                i = j;
            }
            p.clear();
        }
        if (!t.requests) continue;
        std::lock_guard<std::mutex> lock(tallies_mu);
        KernelTally &k = m.tallies[kernel];
        k.all.add(t);
        for (const auto &kv : by_pc) k.by_pc[kv.first].add(kv.second);
    }
}

} // namespace simt
