"""Read haplotype data for the sweep scan: VCF, ms-style simulator output and tskit tree sequences.

Every reader returns ``HaplotypeData`` objects with one shared contract:

* ``positions``: float64, sorted (non-decreasing). VCF: 1-based bp as written. ms: the [0, 1]
  fraction times ``length``. Tree sequences: tskit coordinates unchanged (0-based, continuous), so
  a simulated sweep at ``L / 2`` is at ``L / 2`` here too; the offset of at most 1 bp from VCF
  coordinates is far below any window size.
* ``haplotypes``: uint8, shape (n_sites, n_haplotypes); 0 = ancestral/REF, 1 = derived/ALT,
  ``MISSING`` (255) = no call. Readers never impute: the image encoder decides what missing means
  (``HaplotypeData.filled`` gives the usual "missing as ancestral" 0/1 matrix).
* Only biallelic SNPs that are polymorphic among the returned haplotypes (at least one 0 and one
  1; missing calls ignored). Diploid (or polyploid) VCF samples give ``ploidy`` haplotypes each,
  sample-major: ``s1_h1, s1_h2, s2_h1, ...``.

What is dropped, and counted in ``stats`` (VCF counts are records; each dropped record is counted
once, under the first reason that applies, in this order; ``kept`` + the four drop counts =
``input_sites``):

1. ``multiallelic``: records with two or more ALT alleles (dropped whatever the selected samples
   carry, as ``bcftools view -m2 -M2`` would), and every record of a position that has records
   with different alleles: ``bcftools norm -m-`` splits a multi-allelic site into biallelic
   records at one POS (a carrier of the second ALT reads as REF in the first record), so they are
   not independent SNPs and keeping them would count one site twice. A site gives the same
   result whether or not it was split; a SNP next to an indel at the same POS is such a site too
   (unsplit it is REF A, ALT T,AT). ALT '.' records (all-sites VCFs) do not make a site
   multi-allelic. Tree sequences: sites where a sample carries a second derived state; the
   ancestral/derived states of the returned samples decide, not the site's mutation list.
2. ``non_snp``: indels, MNPs, symbolic alleles (``<DEL>``), '*', 'N'.
3. ``uncalled``: no genotype call among the selected haplotypes (every call missing).
4. ``monomorphic``: every call the same allele (including ALT '.' invariant sites), among the
   selected haplotypes: a sample subset can make a SNP monomorphic.

``missing_calls`` counts the MISSING entries in kept sites (a '.' allele, a whole-call '.', or the
absent second allele of a haploid call in a diploid file; tree sequences: isolated samples);
``unphased_records`` (VCF) the selected records (kept or not) with an unphased heterozygous call.

Duplicate positions that remain are kept: positions are never deduplicated (sweeps.md 3.1).
Simulators repeat positions for distinct mutations: ms prints a few digits (``tskit.write_ms``
rounds to 4, giving thousands of collisions per 100 kb), and VCFs of simulations floor positions
to integer bp (two mutations on one branch then give two identical lines). Tree sequences cannot
repeat a site position. In a VCF, records with the same POS, REF and ALT are all kept;
``duplicate_records`` counts those whose genotype calls (GT) also repeat an earlier record's,
and the log warns: in real data that is a repeated line (overlapping files concatenated), which
``bcftools norm --rm-dup exact`` removes. Records at one POS with different alleles are rule 1.

Chromosome names: a requested chromosome or region that differs from the file's contig only by a
'chr' prefix ('chr2' vs '2', 'chrM' vs 'MT') is read under the file's name; the result keeps the
requested name and says so in ``notes`` and the log. A chromosome without records in the file is
a ``ConfigError`` listing the contigs that have records. Contig lists come from the records (or
the tabix/CSI index), never from ``##contig`` header lines, which reference-wide headers fill with
every contig of the assembly.

Malformed input raises ``InputFormatError`` naming the file, the record (line and CHROM:POS, or
ms replicate and line) and the field. scikit-allel silently mis-parses some broken VCFs (``0-1``
becomes ``0/.``, a short record becomes missing calls, POS beyond int32 wraps), so ``read_vcf``
validates every line in a cheap streaming pass before allel parses the genotypes. An input with
no usable SNP is not an error for the readers (a region may legitimately be empty), but
``check_usable`` (and ``scan_inputs.read_chromosome``) turns it into one that names the likely
cause.

The package, one module per input or task (``io.<name>`` re-exports every public name):

* ``haplotypes``: ``HaplotypeData`` and ``MISSING``, the stats keys and log line readers share.
* ``formats``: ``detect_format`` (magic bytes, then extension); opening plain/gzip/bgzip files.
* ``dispatch``: ``read_haplotypes``, any format through its reader.
* ``vcf``: ``read_vcf`` (VCF text via scikit-allel; BCF decoded by pysam), ``PHASED_MODES``.
* ``vcf_validate``: the validating pass over VCF text that runs before scikit-allel.
* ``regions``: 'chrom:start-end' regions and 'chr' prefix aliases of chromosome names.
* ``bcf``, ``tabix``: BCF and tabix/BGZF through pysam (htslib).
* ``ms``: ``iter_ms``, ``read_ms`` (ms, mssel, msms, msHOT, discoal, scrm output).
* ``trees``: ``read_trees`` (tskit tree sequences).
* ``contigs``: ``record_contigs`` (contigs with records, cheaply).
* ``haplotype_count``: ``count_haplotypes`` (cheaply) and the first-call ploidy reader.
* ``checks``: ``check_usable`` and the no-SNP / all-missing checks.

Names with a leading underscore are shared between these modules (and ``scan_inputs``), not part
of the package's API; import them from the module that defines them.
"""

from .checks import check_usable
from .contigs import record_contigs
from .dispatch import read_haplotypes
from .formats import FORMATS, detect_format
from .haplotype_count import count_haplotypes
from .haplotypes import MISSING, HaplotypeData
from .ms import iter_ms, read_ms
from .trees import read_trees
from .vcf import PHASED_MODES, read_vcf

__all__ = [
    "FORMATS",
    "MISSING",
    "PHASED_MODES",
    "HaplotypeData",
    "check_usable",
    "count_haplotypes",
    "detect_format",
    "iter_ms",
    "read_haplotypes",
    "read_ms",
    "read_trees",
    "read_vcf",
    "record_contigs",
]
