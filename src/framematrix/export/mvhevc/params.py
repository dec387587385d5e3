"""Parsing of the H.265 parameter sets this package rewrites (VPS with its Annex F extension, SPS,
PPS) and of the profile_tier_level() structure; enough of each to rewrite slice headers and to
compare streams with Apple's, not a full decoder.

Only what the two-eye route needs is supported; anything else raises :class:`BitstreamError`
naming the element, rather than silently producing a wrong stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framematrix.export.mvhevc.bitstream import BitReader, BitstreamError

__all__ = ["PPSInfo", "SPSInfo", "parse_pps", "parse_ptl", "parse_sps", "parse_vps"]


def parse_ptl(r: BitReader, profile_present: bool, max_sub_layers_minus1: int) -> dict:
    """profile_tier_level() (7.3.3): the general fields; sub-layer fields are skipped."""
    ptl: dict = {}
    if profile_present:
        ptl["profile_space"] = r.u(2)
        ptl["tier"] = r.u(1)
        ptl["profile_idc"] = r.u(5)
        ptl["compat"] = r.u(32)
        ptl["progressive"] = r.u(1)
        ptl["interlaced"] = r.u(1)
        ptl["non_packed"] = r.u(1)
        ptl["frame_only"] = r.u(1)
        ptl["constraint_44"] = r.u(44)
    ptl["level_idc"] = r.u(8)
    sub_profile, sub_level = [], []
    for _ in range(max_sub_layers_minus1):
        sub_profile.append(r.u(1))
        sub_level.append(r.u(1))
    if max_sub_layers_minus1 > 0:
        for _ in range(max_sub_layers_minus1, 8):
            r.u(2)
    for i in range(max_sub_layers_minus1):
        if sub_profile[i]:
            r.u(88)
        if sub_level[i]:
            r.u(8)
    return ptl


def _skip_hrd(r: BitReader, common: bool, max_sub_layers_minus1: int) -> None:
    """hrd_parameters() (E.2.2), skipped."""
    nal = vcl = sub_pic = False
    if common:
        nal, vcl = r.flag(), r.flag()
        if nal or vcl:
            sub_pic = r.flag()
            if sub_pic:
                r.u(8 + 5 + 1 + 5)
            r.u(8)
            if sub_pic:
                r.u(4)
            r.u(15)
    for _ in range(max_sub_layers_minus1 + 1):
        fixed_general = r.flag()
        fixed_cvs = True if fixed_general else r.flag()
        low_delay = False
        if fixed_cvs:
            r.ue()
        else:
            low_delay = r.flag()
        cpb_cnt = 1 if low_delay else r.ue() + 1
        for present in (nal, vcl):
            if present:
                for _ in range(cpb_cnt):
                    r.ue()
                    r.ue()
                    if sub_pic:
                        r.ue()
                        r.ue()
                    r.u(1)


def _skip_scaling_list_data(r: BitReader) -> None:
    """scaling_list_data() (7.3.4), skipped."""
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not r.u(1):  # scaling_list_pred_mode_flag
                r.ue()
                continue
            if size_id > 1:
                r.se()
            for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                r.se()


def parse_vps(rbsp: bytes) -> dict:
    """video_parameter_set_rbsp() with vps_extension() (F.7.3.2.1) for at most two layers."""
    r = BitReader(rbsp)
    v: dict = {}
    v["vps_id"] = r.u(4)
    v["base_layer_internal"] = r.u(1)
    v["base_layer_available"] = r.u(1)
    v["max_layers_minus1"] = r.u(6)
    v["max_sub_layers_minus1"] = r.u(3)
    v["temporal_id_nesting"] = r.u(1)
    if r.u(16) != 0xFFFF:
        raise BitstreamError("vps_reserved_0xffff_16bits is not 0xffff")
    v["ptl"] = parse_ptl(r, True, v["max_sub_layers_minus1"])
    v["sub_layer_ordering_info_present"] = r.u(1)
    first = 0 if v["sub_layer_ordering_info_present"] else v["max_sub_layers_minus1"]
    v["dpb"] = [(r.ue(), r.ue(), r.ue()) for _ in range(first, v["max_sub_layers_minus1"] + 1)]
    v["max_layer_id"] = r.u(6)
    v["num_layer_sets_minus1"] = r.ue()
    v["layer_id_included"] = [
        [r.u(1) for _ in range(v["max_layer_id"] + 1)] for _ in range(v["num_layer_sets_minus1"])
    ]
    v["timing_info_present"] = r.u(1)
    if v["timing_info_present"]:
        v["num_units_in_tick"] = r.u(32)
        v["time_scale"] = r.u(32)
        if r.u(1):
            v["num_ticks_poc_diff_one_minus1"] = r.ue()
        num_hrd = r.ue()
        for i in range(num_hrd):
            r.ue()
            _skip_hrd(r, True if i == 0 else r.flag(), v["max_sub_layers_minus1"])
    v["extension"] = r.u(1)
    if not v["extension"]:
        return v
    while not r.byte_aligned():
        if not r.u(1):
            raise BitstreamError("vps_extension_alignment_bit_equal_to_one is 0")
    if v["max_layers_minus1"] != 1:
        raise BitstreamError(f"VPS extension with {v['max_layers_minus1'] + 1} layers (only 2)")
    x: dict = {}
    v["ext"] = x
    x["ptl1"] = parse_ptl(r, False, v["max_sub_layers_minus1"])
    x["splitting"] = r.u(1)
    x["scalability_mask"] = [r.u(1) for _ in range(16)]
    num_types = sum(x["scalability_mask"])
    x["dimension_id_len_minus1"] = [r.u(3) for _ in range(num_types - x["splitting"])]
    x["nuh_layer_id_present"] = r.u(1)
    x["layer_id_in_nuh"] = [0, r.u(6) if x["nuh_layer_id_present"] else 1]
    x["dimension_id"] = [[0] * num_types, []]
    if not x["splitting"]:
        x["dimension_id"][1] = [r.u(n + 1) for n in x["dimension_id_len_minus1"]]
    x["view_id_len"] = r.u(4)
    num_views = 2 if x["scalability_mask"][1] else 1
    x["view_id_val"] = [r.u(x["view_id_len"]) for _ in range(num_views)] if x["view_id_len"] else []
    x["direct_dependency_flag"] = r.u(1)
    if not x["direct_dependency_flag"]:
        x["num_add_layer_sets"] = r.ue()
        if x["num_add_layer_sets"]:
            raise BitstreamError("num_add_layer_sets > 0 is not supported")
    x["sub_layers_max_present"] = r.u(1)
    if x["sub_layers_max_present"]:
        x["sub_layers_vps_max_minus1"] = [r.u(3), r.u(3)]
    x["max_tid_ref_present"] = r.u(1)
    if x["max_tid_ref_present"] and x["direct_dependency_flag"]:
        x["max_tid_il_ref_pics_plus1"] = r.u(3)
    x["default_ref_layers_active"] = r.u(1)
    x["num_ptl_minus1"] = r.ue()
    x["ptls"] = []
    for _ in range(2, x["num_ptl_minus1"] + 1):
        present = r.u(1)
        x["ptls"].append(parse_ptl(r, bool(present), v["max_sub_layers_minus1"]))
    num_layer_sets = v["num_layer_sets_minus1"] + 1
    if num_layer_sets != 2:
        raise BitstreamError(f"{num_layer_sets} layer sets (only 2 are supported)")
    x["num_add_olss"] = r.ue()
    x["default_output_layer_idc"] = r.u(2)
    if x["num_add_olss"] or x["default_output_layer_idc"] not in (0, 1):
        raise BitstreamError("additional output layer sets are not supported")
    # Output layer set 1 = layer set 1 = layers {0, 1}; both are necessary layers.
    bits = (x["num_ptl_minus1"]).bit_length() if x["num_ptl_minus1"] > 0 else 0
    x["ptl_idx"] = [r.u(bits) for _ in range(2)] if x["num_ptl_minus1"] > 0 else []
    output_layers = 2 if x["default_output_layer_idc"] == 0 else 1
    if output_layers == 1 and x["direct_dependency_flag"]:
        x["alt_output_layer_flag"] = r.u(1)
    x["num_rep_formats_minus1"] = r.ue()
    x["rep_formats"] = []
    for _ in range(x["num_rep_formats_minus1"] + 1):
        rep = {"width": r.u(16), "height": r.u(16), "chroma_bitdepth_present": r.u(1)}
        if rep["chroma_bitdepth_present"]:
            rep["chroma_format_idc"] = r.u(2)
            if rep["chroma_format_idc"] == 3:
                rep["separate_colour_plane"] = r.u(1)
            rep["bit_depth_luma_minus8"] = r.u(4)
            rep["bit_depth_chroma_minus8"] = r.u(4)
        rep["conformance_window"] = r.u(1)
        if rep["conformance_window"]:
            rep["conf_win"] = [r.ue() for _ in range(4)]
        x["rep_formats"].append(rep)
    if x["num_rep_formats_minus1"] > 0:
        raise BitstreamError("more than one rep_format is not supported")
    x["max_one_active_ref_layer"] = r.u(1)
    x["poc_lsb_aligned"] = r.u(1)
    if not x["direct_dependency_flag"]:
        x["poc_lsb_not_present"] = r.u(1)
    # dpb_size() for output layer set 1 (layers 0 and 1).
    max_sub = v["max_sub_layers_minus1"]
    if x["sub_layers_max_present"]:
        max_sub = max(x["sub_layers_vps_max_minus1"])
    x["sub_layer_flag_info_present"] = r.u(1)
    x["dpb_size"] = []
    for j in range(max_sub + 1):
        present = 1
        if j > 0 and x["sub_layer_flag_info_present"]:
            present = r.u(1)
        if present:
            x["dpb_size"].append(([r.ue(), r.ue()], r.ue(), r.ue()))
    x["direct_dep_type_len_minus2"] = r.ue()
    x["direct_dependency_all_layers"] = r.u(1)
    if x["direct_dependency_all_layers"]:
        x["direct_dependency_all_layers_type"] = r.u(x["direct_dep_type_len_minus2"] + 2)
    elif x["direct_dependency_flag"]:
        x["direct_dependency_type"] = r.u(x["direct_dep_type_len_minus2"] + 2)
    x["non_vui_extension_length"] = r.ue()
    r.u(8 * x["non_vui_extension_length"])
    x["vui_present"] = r.u(1)
    v["bits_left_after_ext"] = r.left()
    return v


@dataclass
class SPSInfo:
    """The SPS fields that slice header parsing depends on (7.3.2.2, F.7.3.2.2.1)."""

    sps_id: int
    vps_id: int
    max_sub_layers_minus1: int
    multilayer_ext: bool
    chroma_format_idc: int
    separate_colour_plane: bool
    width: int
    height: int
    conf_win: tuple[int, int, int, int]
    bit_depth_luma_minus8: int
    bit_depth_chroma_minus8: int
    log2_max_poc_lsb: int
    log2_min_cb: int
    log2_ctb: int
    scaling_list_enabled: bool
    sao: bool
    num_short_term_ref_pic_sets: int
    long_term_ref_pics_present: bool
    num_long_term_ref_pics_sps: int
    temporal_mvp: bool
    # (sps_max_dec_pic_buffering_minus1, sps_max_num_reorder_pics, sps_max_latency_increase_plus1)
    # of the highest sub-layer.
    dpb: tuple[int, int, int] = (0, 0, 0)
    # Bit positions in the RBSP: after sps_seq_parameter_set_id, after the picture format
    # (bit depths), and after the sub-layer ordering info.
    pos_after_id: int = 0
    pos_after_format: int = 0
    pos_after_ordering: int = 0
    ptl: dict = field(default_factory=dict)
    st_rps_num_delta: list[int] = field(default_factory=list)

    @property
    def pic_size_in_ctbs(self) -> int:
        ctb = 1 << self.log2_ctb
        return -(-self.width // ctb) * -(-self.height // ctb)


def parse_st_ref_pic_set(r: BitReader, idx: int, num_sets: int, num_delta: list[int]) -> int:
    """st_ref_pic_set(stRpsIdx) (7.3.7); returns NumDeltaPocs of the set."""
    inter = r.u(1) if idx != 0 else 0
    if inter:
        delta_idx_minus1 = r.ue() if idx == num_sets else 0
        ref = idx - (delta_idx_minus1 + 1)
        r.u(1)  # delta_rps_sign
        r.ue()  # abs_delta_rps_minus1
        count = 0
        for _ in range(num_delta[ref] + 1):
            used = r.u(1)
            use_delta = 1 if used else r.u(1)
            count += 1 if (used or use_delta) else 0
        return count
    num_negative, num_positive = r.ue(), r.ue()
    for _ in range(num_negative + num_positive):
        r.ue()
        r.u(1)
    return num_negative + num_positive


def parse_sps(rbsp: bytes, layer_id: int = 0) -> SPSInfo:
    r = BitReader(rbsp)
    vps_id = r.u(4)
    max_sub = r.u(3)
    multilayer = layer_id != 0 and max_sub == 7
    ptl: dict = {}
    if not multilayer:
        r.u(1)  # sps_temporal_id_nesting_flag
        ptl = parse_ptl(r, True, max_sub)
    sps_id = r.ue()
    pos_after_id = r.pos
    if multilayer:
        if r.u(1):  # update_rep_format_flag
            raise BitstreamError("layer-1 SPS with update_rep_format_flag is not supported")
        raise BitstreamError("parsing a MultiLayerExtSpsFlag SPS needs the VPS rep_format")
    chroma = r.ue()
    separate = bool(r.u(1)) if chroma == 3 else False
    width, height = r.ue(), r.ue()
    if width <= 0 or height <= 0:
        raise BitstreamError(f"SPS picture size {width}x{height} is invalid")
    conf = (0, 0, 0, 0)
    if r.u(1):
        conf = (r.ue(), r.ue(), r.ue(), r.ue())
    depth_luma, depth_chroma = r.ue(), r.ue()
    pos_after_format = r.pos
    log2_poc = r.ue() + 4
    ordering = r.u(1)
    dpb = (0, 0, 0)
    for _ in range(0 if ordering else max_sub, max_sub + 1):
        dpb = (r.ue(), r.ue(), r.ue())
    pos_after_ordering = r.pos
    log2_min_cb = r.ue() + 3
    log2_ctb = log2_min_cb + r.ue()
    r.ue()  # log2_min_luma_transform_block_size_minus2
    r.ue()  # log2_diff_max_min_luma_transform_block_size
    r.ue()  # max_transform_hierarchy_depth_inter
    r.ue()  # max_transform_hierarchy_depth_intra
    scaling = bool(r.u(1))
    if scaling and r.u(1):  # sps_scaling_list_data_present_flag
        _skip_scaling_list_data(r)
    r.u(1)  # amp_enabled_flag
    sao = bool(r.u(1))
    if r.u(1):  # pcm_enabled_flag
        r.u(4 + 4)
        r.ue()
        r.ue()
        r.u(1)
    num_sets = r.ue()
    num_delta: list[int] = []
    for i in range(num_sets):
        num_delta.append(parse_st_ref_pic_set(r, i, num_sets, num_delta))
    long_term = bool(r.u(1))
    num_lt_sps = 0
    if long_term:
        num_lt_sps = r.ue()
        for _ in range(num_lt_sps):
            r.u(log2_poc)
            r.u(1)
    temporal_mvp = bool(r.u(1))
    return SPSInfo(
        sps_id=sps_id,
        vps_id=vps_id,
        max_sub_layers_minus1=max_sub,
        multilayer_ext=multilayer,
        chroma_format_idc=chroma,
        separate_colour_plane=separate,
        width=width,
        height=height,
        conf_win=conf,
        bit_depth_luma_minus8=depth_luma,
        bit_depth_chroma_minus8=depth_chroma,
        log2_max_poc_lsb=log2_poc,
        log2_min_cb=log2_min_cb,
        log2_ctb=log2_ctb,
        scaling_list_enabled=scaling,
        sao=sao,
        num_short_term_ref_pic_sets=num_sets,
        long_term_ref_pics_present=long_term,
        num_long_term_ref_pics_sps=num_lt_sps,
        temporal_mvp=temporal_mvp,
        dpb=dpb,
        pos_after_id=pos_after_id,
        pos_after_format=pos_after_format,
        pos_after_ordering=pos_after_ordering,
        ptl=ptl,
        st_rps_num_delta=num_delta,
    )


@dataclass
class PPSInfo:
    """The PPS fields that slice header parsing depends on (7.3.2.3)."""

    pps_id: int
    sps_id: int
    dependent_slice_segments: bool
    output_flag_present: bool
    num_extra_slice_header_bits: int
    cabac_init_present: bool
    weighted_pred: bool
    weighted_bipred: bool
    tiles: bool
    entropy_coding_sync: bool
    deblocking_override_enabled: bool
    pps_deblocking_disabled: bool
    loop_filter_across_slices: bool
    lists_modification_present: bool
    slice_header_extension_present: bool
    slice_chroma_qp_offsets_present: bool
    pps_ext_flags: int
    num_ref_idx_l0_default_minus1: int = 0
    num_ref_idx_l1_default_minus1: int = 0
    pos_after_sps_id: int = 0


def parse_pps(rbsp: bytes) -> PPSInfo:
    r = BitReader(rbsp)
    pps_id = r.ue()
    sps_id = r.ue()
    pos_after_sps_id = r.pos
    dependent = bool(r.u(1))
    output_flag = bool(r.u(1))
    extra_bits = r.u(3)
    r.u(1)  # sign_data_hiding_enabled_flag
    cabac_init = bool(r.u(1))
    ref_l0 = r.ue()  # num_ref_idx_l0_default_active_minus1
    ref_l1 = r.ue()  # num_ref_idx_l1_default_active_minus1
    r.se()  # init_qp_minus26
    r.u(1)  # constrained_intra_pred_flag
    r.u(1)  # transform_skip_enabled_flag
    if r.u(1):  # cu_qp_delta_enabled_flag
        r.ue()
    r.se()  # pps_cb_qp_offset
    r.se()  # pps_cr_qp_offset
    chroma_offsets = bool(r.u(1))
    weighted_pred = bool(r.u(1))
    weighted_bipred = bool(r.u(1))
    r.u(1)  # transquant_bypass_enabled_flag
    tiles = bool(r.u(1))
    wpp = bool(r.u(1))
    if tiles:
        raise BitstreamError("PPS with tiles is not supported")
    loop_across_slices = bool(r.u(1))
    override = disabled = False
    if r.u(1):  # deblocking_filter_control_present_flag
        override = bool(r.u(1))
        disabled = bool(r.u(1))
        if not disabled:
            r.se()
            r.se()
    if r.u(1):  # pps_scaling_list_data_present_flag
        _skip_scaling_list_data(r)
    lists_mod = bool(r.u(1))
    r.ue()  # log2_parallel_merge_level_minus2
    ext_present = bool(r.u(1))
    ext_flags = 0
    if r.u(1):  # pps_extension_present_flag
        ext_flags = r.u(8)
    return PPSInfo(
        pps_id=pps_id,
        sps_id=sps_id,
        dependent_slice_segments=dependent,
        output_flag_present=output_flag,
        num_extra_slice_header_bits=extra_bits,
        cabac_init_present=cabac_init,
        weighted_pred=weighted_pred,
        weighted_bipred=weighted_bipred,
        tiles=tiles,
        entropy_coding_sync=wpp,
        deblocking_override_enabled=override,
        pps_deblocking_disabled=disabled,
        loop_filter_across_slices=loop_across_slices,
        lists_modification_present=lists_mod,
        slice_header_extension_present=ext_present,
        slice_chroma_qp_offsets_present=chroma_offsets,
        pps_ext_flags=ext_flags,
        num_ref_idx_l0_default_minus1=ref_l0,
        num_ref_idx_l1_default_minus1=ref_l1,
        pos_after_sps_id=pos_after_sps_id,
    )
