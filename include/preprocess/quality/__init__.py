"""The bounding-box quality gate: GX Core expectations over the canonical table, plus ingest's issues.

Modules: :mod:`.checks` (the catalogue: every check, its rules and how a failure is worded),
:mod:`.expectations` (the GX engine that evaluates the rules), :mod:`.gate` (``validate``: the
policy, coverage, the outputs) and :mod:`.report` (``quality.html``).

Checks, and what evaluates them:

========================  ==================  ==================================================
check                     engine              rule
========================  ==================  ==================================================
image_files               ingest              image exists inside the root and decodes (policy)
annotation_files          ingest              each listed image has its annotation file
images_have_boxes         ingest              every image has at least one box
class_ids_known           GX + ingest         class_id in 0..n-1 and named as in classes.json;
                                              no box of an unknown / unselected class
box_values_present        GX                  box coordinates are not NaN
box_inside_image          GX                  -tol <= xmin, ymin; xmax <= width + tol; ymax <= height + tol
box_ordered               GX                  xmin < xmax and ymin < ymax
box_min_side              GX                  xmax - xmin and ymax - ymin >= min_box_side
unique_boxes              GX                  no two rows with the same image, class and box
unique_images             GX                  no two images with the same content hash
objects_per_image         GX                  boxes per image <= (label_width - 2) // 5
split_coverage            pandas              both splits non-empty, every class in both
image_sizes_match         GX (warning)        annotated size, where given, equals the real one
========================  ==================  ==================================================
"""
