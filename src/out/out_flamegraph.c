/* SPDX-License-Identifier: MIT */
/*
 * The interactive flamegraph SVG writer (see out_profile.h), in the spirit of Brendan Gregg's
 * flamegraph.pl: one rectangle per stack node (roots at the bottom), width proportional to its
 * inclusive sample count, siblings ordered alphabetically, a warm colour hashed from the
 * function name. An inline script gives hover details, click-to-zoom, reset and regular
 * expression search (button or Ctrl-F) with the matched share; the file needs nothing else.
 *
 * Layout: nodes sorted by (parent, function, file, line); because a parent's id is smaller
 * than its children's, one pass over that order places every node after its parent. Nodes
 * narrower than 0.1% of the width are not drawn (nor, being narrower still, their children).
 */
#include "pyscope/out_profile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "out_profile_int.h"

#define IMG_WIDTH  1200.0
#define XPAD       10.0
#define FRAME_H    16.0
#define TOP_PAD    60.0 /* title, subtitle and buttons */
#define BOTTOM_PAD 34.0 /* details line */
#define FONT_SIZE  12.0
#define CHAR_W     (FONT_SIZE * 0.59)
#define MIN_SHARE  0.001 /* 0.1% of the width */

struct fg {
    const struct profile *p;
    uint64_t *totals;
    double *x; /* left edge, in samples */
    uint32_t *order;
    size_t n;
    uint64_t grand;
    bool multi_root; /* several thread roots: an "all" bar below them */
    double height;
    const char *unit; /* what a count is: "samples", "raises" */
};

static int cmp_children(const void *a, const void *b, void *arg)
{
    const struct profile *p = arg;
    const struct profile_node *x = profile_node_get(p, *(const uint32_t *)a);
    const struct profile_node *y = profile_node_get(p, *(const uint32_t *)b);
    const struct profile_frame *fx, *fy;
    int c;

    if (x->parent != y->parent)
        return x->parent < y->parent ? -1 : 1;
    if (x->frame == PROFILE_NONE || y->frame == PROFILE_NONE)
        return x->thread < y->thread ? -1 : x->thread > y->thread;
    fx = profile_frame_get(p, x->frame);
    fy = profile_frame_get(p, y->frame);
    c = strcmp(fx->function, fy->function);
    if (c == 0)
        c = strcmp(fx->file, fy->file);
    if (c == 0)
        c = fx->line < fy->line ? -1 : fx->line > fy->line;
    return c;
}

/* Place every node: x of a first child = x of its parent; siblings follow each other. The
 * thread roots (parent PROFILE_NONE) sort last, so they are placed first, in their own pass:
 * their children's x starts from theirs. */
static void layout(struct fg *g)
{
    uint32_t prev_parent = PROFILE_NONE - 1;
    double cursor = 0, roots = 0;

    for (size_t i = 0; i < g->n; i++) {
        uint32_t id = g->order[i];

        if (profile_node_get(g->p, id)->parent == PROFILE_NONE) {
            g->x[id] = roots;
            roots += (double)g->totals[id];
        }
    }
    for (size_t i = 0; i < g->n; i++) {
        uint32_t id = g->order[i];
        const struct profile_node *nd = profile_node_get(g->p, id);

        if (nd->parent == PROFILE_NONE)
            continue;
        if (nd->parent != prev_parent) {
            prev_parent = nd->parent;
            cursor = g->x[nd->parent];
        }
        g->x[id] = cursor;
        cursor += (double)g->totals[id];
    }
}

static double scale(const struct fg *g)
{
    return (IMG_WIDTH - 2 * XPAD) / (double)g->grand;
}

static bool visible(const struct fg *g, uint32_t id)
{
    return (double)g->totals[id] >= MIN_SHARE * (double)g->grand;
}

static unsigned level_of(const struct fg *g, uint32_t id)
{
    return profile_node_get(g->p, id)->depth + (g->multi_root ? 1u : 0u);
}

static void color_of(const char *name, char *buf, size_t cap)
{
    uint32_t h = 2166136261u;

    for (const char *c = name; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    (void)snprintf(buf, cap, "rgb(%u,%u,%u)", 205 + h % 50, 60 + (h >> 8) % 170, (h >> 16) % 60);
}

static void label_of(const struct fg *g, uint32_t id, char *buf, size_t cap)
{
    const struct profile_node *nd = profile_node_get(g->p, id);

    if (nd->frame != PROFILE_NONE)
        out_profile_label(profile_frame_get(g->p, nd->frame), buf, cap);
    else if (g->multi_root)
        out_profile_thread_label(profile_thread_get(g->p, nd->thread), buf, cap);
    else
        (void)snprintf(buf, cap, "all");
}

/* One frame: <g class="f"><title/><rect/><text/></g>. x, w in pixels from the left pad. */
static void put_frame(FILE *f, const struct fg *g, const char *label, uint64_t samples, double x,
                      double w, double y)
{
    char color[32];
    size_t fit = (size_t)((w - 6) / CHAR_W), len = strlen(label);

    color_of(label, color, sizeof(color));
    (void)fputs("<g class=\"f\"><title>", f);
    out_profile_xml_str(f, label);
    (void)fprintf(f, " (%llu %s, %.2f%%)</title>", (unsigned long long)samples, g->unit,
                  100.0 * (double)samples / (double)g->grand);
    (void)fprintf(f,
                  "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" "
                  "rx=\"2\" data-x=\"%.3f\" data-w=\"%.3f\" data-c=\"%s\"/>",
                  XPAD + x, y, w, FRAME_H - 1, color, x, w, color);
    (void)fprintf(f, "<text x=\"%.2f\" y=\"%.1f\">", XPAD + x + 3, y + FRAME_H - 4.5);
    if (fit >= 3 && len <= fit) {
        out_profile_xml_str(f, label);
    } else if (fit >= 3) {
        char cut[OUT_LABEL_MAX];

        /* Cut at a character boundary, then mark the cut. */
        size_t k = fit - 2;
        while (k > 0 && ((unsigned char)label[k] & 0xc0) == 0x80)
            k--;
        (void)snprintf(cut, sizeof(cut), "%.*s..", (int)k, label);
        out_profile_xml_str(f, cut);
    }
    (void)fputs("</text></g>\n", f);
}

static const char *const fg_style =
    "<style type=\"text/css\">\n"
    "text { font-family: monospace; font-size: 12px; fill: rgb(0,0,0); }\n"
    ".f:hover rect { stroke: rgb(0,0,0); stroke-width: 0.5; cursor: pointer; }\n"
    "#title { font-size: 17px; text-anchor: middle; }\n"
    "#subtitle { text-anchor: middle; fill: rgb(80,80,80); }\n"
    ".btn { cursor: pointer; fill: rgb(0,0,160); }\n"
    ".hide { display: none; }\n"
    "</style>\n";

/* The interactive part: hover details, zoom, reset, search. Written for this file only. */
static const char *const fg_script =
    "<script type=\"text/ecmascript\"><![CDATA[\n"
    "var W, PAD = 10, frames, details, unzoom, matched, zoomed = false;\n"
    "function num(r, a) { return parseFloat(r.getAttribute(a)); }\n"
    "function init() {\n"
    "  W = num(document.documentElement, 'width') - 2 * PAD;\n"
    "  frames = document.getElementById('frames');\n"
    "  details = document.getElementById('details');\n"
    "  unzoom = document.getElementById('unzoom');\n"
    "  matched = document.getElementById('matched');\n"
    "  frames.addEventListener('mouseover', function (e) {\n"
    "    var g = up(e.target); if (g) details.textContent = title(g); });\n"
    "  frames.addEventListener('mouseout', function () { details.textContent = ' '; });\n"
    "  frames.addEventListener('click', function (e) { var g = up(e.target); if (g) zoom(g); });\n"
    "  unzoom.addEventListener('click', reset);\n"
    "  document.getElementById('search').addEventListener('click', search);\n"
    "  document.addEventListener('keydown', function (e) {\n"
    "    if ((e.ctrlKey || e.metaKey) && e.key === 'f') { e.preventDefault(); search(); }\n"
    "    if (e.key === 'Escape') reset(); });\n"
    "}\n"
    "function up(n) { while (n && n.getAttribute) {\n"
    "  if (n.getAttribute('class') === 'f') return n; n = n.parentNode; } return null; }\n"
    "function title(g) { return g.getElementsByTagName('title')[0].textContent; }\n"
    "function label(g) { return title(g).replace(/ \\([0-9]+ [a-z]+, [0-9.]+%\\)$/, ''); }\n"
    "function place(g, x, w) {\n"
    "  var r = g.getElementsByTagName('rect')[0], t = g.getElementsByTagName('text')[0];\n"
    "  var s = label(g), fit = Math.floor((w - 6) / 7.08);\n"
    "  r.setAttribute('x', PAD + x); r.setAttribute('width', w);\n"
    "  t.setAttribute('x', PAD + x + 3);\n"
    "  t.textContent = fit < 3 ? '' : (s.length <= fit ? s : s.substring(0, fit - 2) + '..');\n"
    "  g.removeAttribute('display');\n"
    "}\n"
    "function zoom(g) {\n"
    "  var r = g.getElementsByTagName('rect')[0], x = num(r, 'data-x'), w = num(r, 'data-w');\n"
    "  var y = num(r, 'y'), gs = frames.getElementsByTagName('g'), e = 1e-6;\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var q = gs[i].getElementsByTagName('rect')[0];\n"
    "    var qx = num(q, 'data-x'), qw = num(q, 'data-w'), qy = num(q, 'y');\n"
    "    if (qy > y && qx <= x + e && qx + qw >= x + w - e) place(gs[i], 0, W);\n"
    "    else if (qy <= y && qx >= x - e && qx + qw <= x + w + e)\n"
    "      place(gs[i], (qx - x) * W / w, qw * W / w);\n"
    "    else gs[i].setAttribute('display', 'none');\n"
    "  }\n"
    "  zoomed = true; unzoom.removeAttribute('class'); unzoom.setAttribute('class', 'btn');\n"
    "}\n"
    "function reset() {\n"
    "  var gs = frames.getElementsByTagName('g');\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var q = gs[i].getElementsByTagName('rect')[0];\n"
    "    place(gs[i], num(q, 'data-x'), num(q, 'data-w'));\n"
    "  }\n"
    "  zoomed = false; unzoom.setAttribute('class', 'btn hide');\n"
    "}\n"
    "function search() {\n"
    "  var term = prompt('Search frames (regular expression):', ''), re, spans = [];\n"
    "  if (term === null) return;\n"
    "  try { re = new RegExp(term); } catch (err) { matched.textContent = 'bad regex'; return; }\n"
    "  var gs = frames.getElementsByTagName('g');\n"
    "  for (var i = 0; i < gs.length; i++) {\n"
    "    var q = gs[i].getElementsByTagName('rect')[0], hit = term !== '' && "
    "re.test(label(gs[i]));\n"
    "    q.setAttribute('fill', hit ? 'rgb(230,0,230)' : q.getAttribute('data-c'));\n"
    "    if (hit) spans.push([num(q, 'data-x'), num(q, 'data-x') + num(q, 'data-w')]);\n"
    "  }\n"
    "  spans.sort(function (a, b) { return a[0] - b[0]; });\n"
    "  var sum = 0, end = -1;\n"
    "  for (var k = 0; k < spans.length; k++) {\n"
    "    var a = Math.max(spans[k][0], end), b = spans[k][1];\n"
    "    if (b > a) sum += b - a; if (b > end) end = b;\n"
    "  }\n"
    "  matched.textContent = term === '' ? ' ' : 'Matched: ' + (100 * sum / W).toFixed(1) + '%';\n"
    "}\n"
    "]]></script>\n";

static void put_header(FILE *f, const struct fg *g, const struct out_profile_opts *o)
{
    (void)fprintf(f,
                  "<?xml version=\"1.0\" standalone=\"no\"?>\n"
                  "<svg version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
                  "viewBox=\"0 0 %.0f %.0f\" onload=\"init(evt)\" "
                  "xmlns=\"http://www.w3.org/2000/svg\">\n",
                  IMG_WIDTH, g->height, IMG_WIDTH, g->height);
    (void)fputs(fg_style, f);
    (void)fputs(fg_script, f);
    (void)fprintf(f,
                  "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
                  "fill=\"rgb(250,250,240)\"/>\n<text id=\"title\" x=\"%.0f\" y=\"24\">",
                  IMG_WIDTH, g->height, IMG_WIDTH / 2);
    out_profile_xml_str(f, o->title ? o->title : "pyscope profile");
    (void)fprintf(f, "</text>\n<text id=\"subtitle\" x=\"%.0f\" y=\"44\">%llu %s", IMG_WIDTH / 2,
                  (unsigned long long)g->grand, g->unit);
    if (o->rate_hz > 0)
        (void)fprintf(f, " at %.0f Hz", o->rate_hz);
    (void)fprintf(f,
                  "</text>\n<text id=\"unzoom\" class=\"btn hide\" x=\"%.0f\" y=\"24\">"
                  "Reset Zoom</text>\n<text id=\"search\" class=\"btn\" x=\"%.0f\" y=\"24\">"
                  "Search</text>\n<text id=\"matched\" x=\"%.0f\" y=\"%.0f\"> </text>\n"
                  "<text id=\"details\" x=\"%.0f\" y=\"%.0f\"> </text>\n",
                  XPAD, IMG_WIDTH - XPAD - 60, IMG_WIDTH - XPAD - 160, g->height - 12, XPAD,
                  g->height - 12);
}

static void put_frames(FILE *f, const struct fg *g)
{
    char label[OUT_LABEL_MAX];
    double k = scale(g);

    (void)fputs("<g id=\"frames\">\n", f);
    if (g->multi_root)
        put_frame(f, g, "all", g->grand, 0, (double)g->grand * k, g->height - BOTTOM_PAD - FRAME_H);
    for (size_t i = 0; i < g->n; i++) {
        uint32_t id = g->order[i];

        if (!visible(g, id))
            continue;
        label_of(g, id, label, sizeof(label));
        put_frame(f, g, label, g->totals[id], g->x[id] * k, (double)g->totals[id] * k,
                  g->height - BOTTOM_PAD - (level_of(g, id) + 1) * FRAME_H);
    }
    (void)fputs("</g>\n</svg>\n", f);
}

static int fg_prepare(struct fg *g, const struct profile *p, struct ps_err *err)
{
    unsigned maxlevel = 0;

    g->p = p;
    g->n = profile_nnodes(p);
    g->totals = malloc(sizeof(*g->totals) * (g->n + 1));
    g->x = malloc(sizeof(*g->x) * (g->n + 1));
    g->order = malloc(sizeof(*g->order) * (g->n + 1));
    if (!g->totals || !g->x || !g->order)
        return ps_err_set(err, -ENOMEM, "out of memory laying out the flamegraph");
    profile_node_totals(p, g->totals);
    g->multi_root = profile_nthreads(p) > 1;
    for (uint32_t i = 0; i < g->n; i++) {
        g->order[i] = i;
        if (profile_node_get(p, i)->parent == PROFILE_NONE)
            g->grand += g->totals[i];
    }
    qsort_r(g->order, g->n, sizeof(*g->order), cmp_children, (void *)p);
    layout(g);
    for (uint32_t i = 0; g->grand && i < g->n; i++)
        if (visible(g, i) && level_of(g, i) > maxlevel)
            maxlevel = level_of(g, i);
    g->height = TOP_PAD + BOTTOM_PAD + (maxlevel + 1) * FRAME_H;
    return 0;
}

int out_flamegraph_write(FILE *f, const struct profile *p, const struct out_profile_opts *o,
                         struct ps_err *err)
{
    struct fg g = {.unit = o->unit ? o->unit : "samples"};
    int rc = fg_prepare(&g, p, err);

    if (rc == 0) {
        put_header(f, &g, o);
        if (g.grand)
            put_frames(f, &g);
        else
            (void)fprintf(f,
                          "<g id=\"frames\"></g>\n<text x=\"%.0f\" y=\"%.0f\">no %s"
                          "</text>\n</svg>\n",
                          XPAD, TOP_PAD, g.unit);
        if (fflush(f) != 0 || ferror(f))
            rc = ps_err_set(err, -EIO, "writing the flamegraph failed (disk full?)");
    }
    free(g.order);
    free(g.x);
    free(g.totals);
    return rc;
}
