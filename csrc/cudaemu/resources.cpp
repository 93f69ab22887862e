/* What each kernel asks of a real GPU's multiprocessor, checked at every emulated launch: registers a
 * thread and static shared memory as ptxas compiled the kernel for each target (build.sh writes them,
 * from `cuobjdump -res-usage` of the real build/libserl_cuda.so, into <emulated object>.resources).
 * A block whose threads need more registers than the multiprocessor has, or more shared memory than a
 * block may hold, does not launch on a GPU ("too many resources requested for launch"), whatever the
 * emulator could run. A kernel is found by its symbol: g++ and nvcc mangle the same declaration alike.
 *
 * Table lines: `<arch> <registers> <static shared bytes> <mangled name>`; archs other than sm_80 and
 * sm_90 are not read. sm_80's lines are checked against the sm_86/sm_89 multiprocessors too, which run
 * that code with less shared memory. */
#include <dlfcn.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "internal.h"
#include "simt.h"

namespace simt {
namespace {

struct Limits {
    const char *arch;    /* the multiprocessor */
    const char *code;    /* the table's arch whose code it runs */
    unsigned regs;       /* 32-bit registers a block may use (the multiprocessor's file) */
    size_t shared_optin; /* shared memory a block may use, static and dynamic together */
};
/* A100 (sm_80): 163 KiB a block; A10, RTX 30, L4, RTX 40 (sm_86, sm_89: the sm_80 code): 99 KiB;
 * H100/H200 (sm_90): 227 KiB; all 64 K registers. */
const Limits kLimits[] = {{"sm_80", "sm_80", 65536, 163 << 10},
                          {"sm_86/sm_89", "sm_80", 65536, 99 << 10},
                          {"sm_90", "sm_90", 65536, 227 << 10}};

struct Usage {
    unsigned regs;
    size_t shared;
};

struct Object {
    std::string path;
    bool table_loaded = false;
    std::string error;                              /* why the object's kernels cannot be checked */
    std::map<uintptr_t, std::string> symbols;       /* function address → mangled name */
    std::map<std::string, std::vector<std::pair<const Limits *, Usage>>> table;
};

std::mutex mu;
std::map<uintptr_t, Object> objects; /* by load address */

/* The STT_FUNC symbols of the ELF file at path, loaded at base. */
bool read_symbols(const std::string &path, uintptr_t base, std::map<uintptr_t, std::string> &out, std::string &err) {
    std::ifstream f(path, std::ios::binary);
    std::string img((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (img.size() < sizeof(Elf64_Ehdr)) {
        err = "cannot read " + path;
        return false;
    }
    const char *d = img.data();
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)d;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > img.size()) {
        err = path + " is not a 64-bit ELF file";
        return false;
    }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(d + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr &strs = sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > img.size() || strs.sh_offset + strs.sh_size > img.size()) break;
        const Elf64_Sym *sym = (const Elf64_Sym *)(d + sh[i].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); k++) {
            if (ELF64_ST_TYPE(sym[k].st_info) != STT_FUNC || !sym[k].st_value || sym[k].st_name >= strs.sh_size) continue;
            out[base + sym[k].st_value] = d + strs.sh_offset + sym[k].st_name;
        }
        return true;
    }
    err = path + " has no symbol table (stripped?)";
    return false;
}

bool read_table(const std::string &path, Object &o, std::string &err) {
    std::ifstream f(path);
    if (!f) {
        err = "cannot open " + path + " (build.sh writes it from cuobjdump -res-usage of the real library)";
        return false;
    }
    std::string line;
    for (int n = 1; std::getline(f, line); n++) {
        std::istringstream in(line);
        std::string arch, name;
        Usage u;
        if (!(in >> arch >> u.regs >> u.shared >> name)) {
            err = path + ":" + std::to_string(n) + ": want <arch> <registers> <shared bytes> <symbol>";
            return false;
        }
        for (const Limits &l : kLimits)
            if (arch == l.code) o.table[name].push_back({&l, u});
    }
    return true;
}

/* The object (library or executable) holding fn, loaded once. Under mu. */
Object *object_of(const void *fn) {
    Dl_info info;
    if (!dladdr(fn, &info) || !info.dli_fname) return nullptr;
    auto [it, fresh] = objects.try_emplace((uintptr_t)info.dli_fbase);
    Object &o = it->second;
    if (fresh) {
        /* the main program may be named as it was run, without a directory; a relative name is
         * resolved at the first launch, as the working directory is then */
        const bool main_program = strchr(info.dli_fname, '/') == nullptr;
        char *real = realpath(main_program ? "/proc/self/exe" : info.dli_fname, nullptr);
        if (!real) {
            o.error = std::string("cannot resolve the path of ") + info.dli_fname;
            return &o;
        }
        o.path = real;
        free(real);
        read_symbols(o.path, (uintptr_t)info.dli_fbase, o.symbols, o.error);
    }
    return &o;
}

} // namespace

const char *kernel_symbol(const void *fn) {
    std::lock_guard<std::mutex> l(mu);
    Object *o = object_of(fn);
    if (!o) return nullptr;
    auto it = o->symbols.find((uintptr_t)fn);
    return it == o->symbols.end() ? nullptr : it->second.c_str();
}

bool resources_ok(const void *fn, unsigned threads, size_t dyn_shared, std::string &why) {
    std::lock_guard<std::mutex> l(mu);
    Object *o = object_of(fn);
    if (!o) {
        why = "no object file holds the kernel";
        return false;
    }
    if (o->error.empty() && !o->table_loaded) {
        o->table_loaded = true; /* at the first launch, so that a program may write its table first */
        read_table(o->path + ".resources", *o, o->error);
    }
    if (!o->error.empty()) {
        why = o->error;
        return false;
    }
    auto s = o->symbols.find((uintptr_t)fn);
    if (s == o->symbols.end()) {
        why = "the kernel has no symbol";
        return false;
    }
    auto t = o->table.find(s->second);
    if (t == o->table.end()) {
        why = "no resource usage is recorded for " + s->second;
        return false;
    }
    char buf[300];
    for (const auto &[lim, u] : t->second) {
        /* registers are allocated per warp in units of 256 */
        const unsigned per_warp = (u.regs * 32 + 255) / 256 * 256, warps = (threads + 31) / 32;
        if ((unsigned long long)per_warp * warps > lim->regs) {
            snprintf(buf, sizeof buf, "on %s, %u registers a thread (ptxas) × %u threads need %u of the %u a block may use",
                     lim->arch, u.regs, threads, per_warp * warps, lim->regs);
            why = buf;
            return false;
        }
        if (u.shared + dyn_shared > lim->shared_optin) {
            snprintf(buf, sizeof buf, "on %s, %zu bytes of static and %zu of dynamic shared memory exceed a block's %zu",
                     lim->arch, u.shared, dyn_shared, lim->shared_optin);
            why = buf;
            return false;
        }
    }
    return true;
}

} // namespace simt
