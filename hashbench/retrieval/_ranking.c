/*
 * hashbench._ranking: the inner loop of hashbench.metrics, compiled.
 *
 * relevant_ranks(q_words, db_words, q_labels, db_labels, words, label_words, depth,
 *                ranks, counts[, totals]) -> None
 * radius_counts(q_words, db_words, q_labels, db_labels, words, label_words, radius,
 *               within, hits) -> None
 *
 * Inputs are C-contiguous uint64 buffers: bit-packed codes (rows x words, n x words) and
 * bit-packed multi-hot labels (rows x label_words, n x label_words).  For every query row it
 * ranks the n database items by ascending Hamming distance, ties by ascending index (the
 * ranking hashbench.metrics defines), and writes the ascending 1-based ranks of the relevant
 * items (labels sharing a bit) among the first `depth` ranks into ranks[row, :counts[row]]
 * (int64, rows x depth; counts: int64, rows).  If given, totals[row] (int64, rows) receives the
 * number of relevant items in the whole database, for recall.
 *
 * radius_counts needs no ranking: per query row it counts the database items within Hamming
 * distance `radius` (within[row]) and the relevant ones among them (hits[row]), both int64.
 *
 * Distances are small integers, so the ranking is a counting sort: a histogram of the row's
 * distances gives where each distance's run of items starts, and a second pass in index order
 * hands out positions within each run, which keeps ties in index order.  No comparison sort,
 * no (distance, index) keys and no per-pair matrices: each pair's database words are read
 * once, and the scratch is one row's 2-byte keys and 1-byte hits.  The GIL is released while
 * it runs, so hashbench.metrics can rank blocks of queries on several threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Hardware popcount where the CPU has it, chosen at load time (GCC on x86-64 Linux); elsewhere
 * the compiler's default, which is the popcount instruction on arm64. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define HB_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define HB_CLONES
#endif

#if defined(_MSC_VER)
#include <intrin.h>
#define HB_POPCOUNT(x) ((unsigned)__popcnt64(x))
#define restrict __restrict
#else
#define HB_POPCOUNT(x) ((unsigned)__builtin_popcountll(x))
#endif

/* Between the two passes a distance and a relevance bit share a uint16: codes of up to
 * 32,767 bits. */
#define HB_MAX_BITS 32767

/* The row is cut into HB_LANES contiguous segments with their own counters, walked in
 * step: a counting sort's increments then form HB_LANES independent chains instead of one
 * (consecutive items often share a distance), about twice as fast.  Positions are handed out
 * segment after segment within each distance, so ties still rank in index order. */
#define HB_LANES 4

typedef struct {
    const uint64_t *q, *db, *ql, *dl;
    Py_ssize_t rows, n, words, label_words, depth;
    int64_t *ranks, *counts;
    int64_t *totals;   /* rows, or NULL: relevant items in the whole database */
    Py_ssize_t *count; /* HB_LANES x (words * 64 + 1) */
    uint16_t *key;     /* n: distance << 1 | relevant */
    uint8_t *hit;      /* n: hit[p] = relevance of the item at rank p + 1 */
} Job;

static inline unsigned
item_key(const uint64_t *restrict q, const uint64_t *restrict b, Py_ssize_t W,
         const uint64_t *restrict ql, const uint64_t *restrict l, Py_ssize_t L)
{
    unsigned d = 0;
    uint64_t shared = 0;
    for (Py_ssize_t w = 0; w < W; w++)
        d += HB_POPCOUNT(q[w] ^ b[w]);
    for (Py_ssize_t w = 0; w < L; w++)
        shared |= ql[w] & l[w];
    return d << 1 | (shared != 0);
}

HB_CLONES
static void rank_rows(const Job *job)
{
    /* Local restrict pointers: hit is a byte array, which may alias anything, so through
     * job-> the compiler would reload every pointer after each store. */
    const Py_ssize_t n = job->n, W = job->words, L = job->label_words, depth = job->depth;
    const Py_ssize_t bins = W * 64 + 1;
    const uint64_t *restrict db = job->db, *restrict dl = job->dl;
    Py_ssize_t *restrict count = job->count;
    uint16_t *restrict key = job->key;
    uint8_t *restrict hit = job->hit;
    Py_ssize_t lo[HB_LANES], len[HB_LANES], common = n;
    for (int s = 0; s < HB_LANES; s++) {
        lo[s] = n * s / HB_LANES;
        len[s] = n * (s + 1) / HB_LANES - lo[s];
        if (len[s] < common)
            common = len[s];
    }
    for (Py_ssize_t row = 0; row < job->rows; row++) {
        const uint64_t *restrict q = job->q + row * W, *restrict ql = job->ql + row * L;
        memset(count, 0, (size_t)(HB_LANES * bins) * sizeof(Py_ssize_t));
        /* pass 1: each item's key (distance << 1 | relevant) and each segment's histogram */
        if (W == 1 && L == 1) {
            /* the common case, spelled out: item_key(..., 1, ..., 1) inlined here ran at half
             * this speed (GCC 12, -O3) */
            const uint64_t q0 = q[0], l0 = ql[0];
            for (Py_ssize_t i = 0; i < common; i++)
                for (int s = 0; s < HB_LANES; s++) {
                    const Py_ssize_t j = lo[s] + i;
                    const unsigned d = HB_POPCOUNT(q0 ^ db[j]);
                    key[j] = (uint16_t)(d << 1 | ((l0 & dl[j]) != 0));
                    count[s * bins + d]++;
                }
        } else {
            for (Py_ssize_t i = 0; i < common; i++)
                for (int s = 0; s < HB_LANES; s++) {
                    const Py_ssize_t j = lo[s] + i;
                    const unsigned k = item_key(q, db + j * W, W, ql, dl + j * L, L);
                    key[j] = (uint16_t)k;
                    count[s * bins + (k >> 1)]++;
                }
        }
        for (int s = 0; s < HB_LANES; s++) /* the segments' last items, if longer */
            for (Py_ssize_t j = lo[s] + common; j < lo[s] + len[s]; j++) {
                const unsigned k = item_key(q, db + j * W, W, ql, dl + j * L, L);
                key[j] = (uint16_t)k;
                count[s * bins + (k >> 1)]++;
            }
        /* counts -> first position of each (distance, segment), distance-major */
        Py_ssize_t total = 0;
        for (Py_ssize_t d = 0; d < bins; d++)
            for (int s = 0; s < HB_LANES; s++) {
                const Py_ssize_t c = count[s * bins + d];
                count[s * bins + d] = total;
                total += c;
            }
        /* pass 2, in index order within each segment: each item's position, and its relevance
         * at that position.  Positions are a permutation of 0..n-1, so every byte of hit is
         * written: no reset. */
        for (Py_ssize_t i = 0; i < common; i++)
            for (int s = 0; s < HB_LANES; s++) {
                const unsigned k = key[lo[s] + i];
                hit[count[s * bins + (k >> 1)]++] = (uint8_t)(k & 1);
            }
        for (int s = 0; s < HB_LANES; s++)
            for (Py_ssize_t j = lo[s] + common; j < lo[s] + len[s]; j++) {
                const unsigned k = key[j];
                hit[count[s * bins + (k >> 1)]++] = (uint8_t)(k & 1);
            }
        /* the ranks of the relevant items, ascending, without a branch per position */
        int64_t *restrict out = job->ranks + row * depth;
        Py_ssize_t c = 0;
        for (Py_ssize_t p = 0; p < depth; p++) {
            out[c] = (int64_t)(p + 1);
            c += hit[p];
        }
        job->counts[row] = (int64_t)c;
        if (job->totals) {
            Py_ssize_t t = c;
            for (Py_ssize_t p = depth; p < n; p++)
                t += hit[p];
            job->totals[row] = (int64_t)t;
        }
    }
}

/* radius_counts' loop: one pass over the database per query, no ranking.  The comparison
 * and both counters are branch-free, so the pass runs at the speed of item_key. */
HB_CLONES
static void radius_rows(const uint64_t *restrict q_all, const uint64_t *restrict db,
                        const uint64_t *restrict ql_all, const uint64_t *restrict dl, Py_ssize_t rows,
                        Py_ssize_t n, Py_ssize_t W, Py_ssize_t L, Py_ssize_t radius,
                        int64_t *restrict within, int64_t *restrict hits)
{
    for (Py_ssize_t row = 0; row < rows; row++) {
        const uint64_t *restrict q = q_all + row * W, *restrict ql = ql_all + row * L;
        int64_t inside = 0, relevant = 0;
        if (W == 1 && L == 1) { /* the common case spelled out, as in rank_rows */
            const uint64_t q0 = q[0], l0 = ql[0];
            for (Py_ssize_t j = 0; j < n; j++) {
                const int64_t in = HB_POPCOUNT(q0 ^ db[j]) <= (unsigned)radius;
                inside += in;
                relevant += in & ((l0 & dl[j]) != 0);
            }
        } else {
            for (Py_ssize_t j = 0; j < n; j++) {
                const unsigned k = item_key(q, db + j * W, W, ql, dl + j * L, L);
                const int64_t in = (k >> 1) <= (unsigned)radius;
                inside += in;
                relevant += in & (int64_t)(k & 1);
            }
        }
        within[row] = inside;
        hits[row] = relevant;
    }
}

static int
check_size(const Py_buffer *buf, Py_ssize_t items, Py_ssize_t itemsize, const char *name)
{
    if (buf->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", name, items * itemsize,
                     buf->len);
        return -1;
    }
    return 0;
}

static PyObject *
relevant_ranks(PyObject *self, PyObject *args)
{
    Py_buffer q = {0}, db = {0}, ql = {0}, dl = {0}, ranks = {0}, counts = {0}, totals = {0};
    Py_ssize_t W, L, depth;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nnnw*w*|w*", &q, &db, &ql, &dl, &W, &L, &depth, &ranks,
                          &counts, &totals))
        return NULL;
    Job job = {0};
    if (W < 1 || L < 1 || W * 64 > HB_MAX_BITS) {
        PyErr_Format(PyExc_ValueError, "words must be in 1..%d and label_words >= 1",
                     HB_MAX_BITS / 64);
        goto done;
    }
    if (q.len % (W * 8) || db.len % (W * 8)) {
        PyErr_SetString(PyExc_ValueError, "code buffers are not a whole number of rows");
        goto done;
    }
    job.rows = q.len / (W * 8);
    job.n = db.len / (W * 8);
    if (depth < 1 || depth > job.n) {
        PyErr_Format(PyExc_ValueError, "depth must be in 1..%zd, got %zd", job.n, depth);
        goto done;
    }
    if (check_size(&ql, job.rows * L, 8, "q_labels") || check_size(&dl, job.n * L, 8, "db_labels")
        || check_size(&ranks, job.rows * depth, 8, "ranks")
        || check_size(&counts, job.rows, 8, "counts")
        || (totals.buf && check_size(&totals, job.rows, 8, "totals")))
        goto done;
    job.q = q.buf, job.db = db.buf, job.ql = ql.buf, job.dl = dl.buf;
    job.words = W, job.label_words = L, job.depth = depth;
    job.ranks = ranks.buf, job.counts = counts.buf, job.totals = totals.buf;
    job.count = PyMem_RawMalloc((size_t)(HB_LANES * (W * 64 + 1)) * sizeof(Py_ssize_t));
    job.key = PyMem_RawMalloc((size_t)job.n * sizeof(uint16_t));
    job.hit = PyMem_RawMalloc((size_t)job.n);
    if (!job.count || !job.key || !job.hit) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    rank_rows(&job);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(job.count);
    PyMem_RawFree(job.key);
    PyMem_RawFree(job.hit);
    PyBuffer_Release(&q);
    PyBuffer_Release(&db);
    PyBuffer_Release(&ql);
    PyBuffer_Release(&dl);
    PyBuffer_Release(&ranks);
    PyBuffer_Release(&counts);
    if (totals.obj)
        PyBuffer_Release(&totals);
    return result;
}

static PyObject *
radius_counts(PyObject *self, PyObject *args)
{
    Py_buffer q = {0}, db = {0}, ql = {0}, dl = {0}, within = {0}, hits = {0};
    Py_ssize_t W, L, radius, rows = 0, n = 0;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nnnw*w*", &q, &db, &ql, &dl, &W, &L, &radius, &within,
                          &hits))
        return NULL;
    if (W < 1 || L < 1 || W * 64 > HB_MAX_BITS) {
        PyErr_Format(PyExc_ValueError, "words must be in 1..%d and label_words >= 1",
                     HB_MAX_BITS / 64);
        goto done;
    }
    if (radius < 0) {
        PyErr_Format(PyExc_ValueError, "radius must be >= 0, got %zd", radius);
        goto done;
    }
    if (q.len % (W * 8) || db.len % (W * 8)) {
        PyErr_SetString(PyExc_ValueError, "code buffers are not a whole number of rows");
        goto done;
    }
    rows = q.len / (W * 8);
    n = db.len / (W * 8);
    if (check_size(&ql, rows * L, 8, "q_labels") || check_size(&dl, n * L, 8, "db_labels")
        || check_size(&within, rows, 8, "within") || check_size(&hits, rows, 8, "hits"))
        goto done;
    if (radius > W * 64) /* every item is within; keeps the unsigned comparison exact */
        radius = W * 64;
    Py_BEGIN_ALLOW_THREADS
    radius_rows(q.buf, db.buf, ql.buf, dl.buf, rows, n, W, L, radius, within.buf, hits.buf);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&q);
    PyBuffer_Release(&db);
    PyBuffer_Release(&ql);
    PyBuffer_Release(&dl);
    PyBuffer_Release(&within);
    PyBuffer_Release(&hits);
    return result;
}

static PyMethodDef methods[] = {
    {"relevant_ranks", relevant_ranks, METH_VARARGS,
     "relevant_ranks(q_words, db_words, q_labels, db_labels, words, label_words, depth, ranks, "
     "counts[, totals]): per query row, the ascending 1-based ranks of its relevant items within the "
     "first depth ranks (ranks[row, :counts[row]]); totals[row], if given: all its relevant items."},
    {"radius_counts", radius_counts, METH_VARARGS,
     "radius_counts(q_words, db_words, q_labels, db_labels, words, label_words, radius, within, "
     "hits): per query row, the database items within Hamming distance radius (within[row]) and "
     "the relevant ones among them (hits[row])."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hashbench._ranking",
    .m_doc = "Compiled counting-sort ranking for hashbench.metrics.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__ranking(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_BITS", HB_MAX_BITS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
