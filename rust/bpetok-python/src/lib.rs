//! `bpetok._bpetok`: the only PyO3 code of the project. It adapts the core crate to Python:
//! arguments converted, the GIL released around real work, errors mapped to exceptions in one
//! place (`errors.rs`). Argument policy and documentation live in the Python package `bpetok`.

mod collector;
mod data;
mod errors;
mod int_ids;
mod list_items;
mod str_data;
mod text_str;
mod tokenizer;

use pyo3::prelude::*;

#[pymodule]
fn _bpetok(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<data::PyMegatronWriter>()?;
    m.add_function(wrap_pyfunction!(data::megatron_dtype_for, m)?)?;
    m.add_function(wrap_pyfunction!(data::pack, m)?)?;
    m.add_function(wrap_pyfunction!(data::plan_partitions, m)?)?;
    m.add_function(wrap_pyfunction!(data::input_kind, m)?)?;
    m.add_function(wrap_pyfunction!(data::prepare_partitioned, m)?)?;
    m.add_function(wrap_pyfunction!(data::pack_partition, m)?)?;
    m.add_function(wrap_pyfunction!(data::finish_partitions, m)?)?;
    m.add_function(wrap_pyfunction!(data::encode_files, m)?)?;
    m.add_function(wrap_pyfunction!(data::decode_files, m)?)?;
    m.add_function(wrap_pyfunction!(data::count_files, m)?)?;
    m.add_function(wrap_pyfunction!(data::verify_shards, m)?)?;
    m.add_function(wrap_pyfunction!(data::inspect_shards, m)?)?;
    m.add_function(wrap_pyfunction!(data::check_tokenizer, m)?)?;
    m.add_function(wrap_pyfunction!(data::default_threads, m)?)?;
    m.add("MAX_SEQ_LEN", bpetok::data::pack::MAX_SEQ_LEN)?;
    m.add(
        "DEFAULT_PACK_BUFFER",
        bpetok::data::pack::DEFAULT_PACK_BUFFER,
    )?;
    m.add(
        "DEFAULT_SAMPLES_PER_SHARD",
        bpetok::data::shard::DEFAULT_SAMPLES_PER_SHARD,
    )?;
    m.add("SHARD_FORMAT", bpetok::data::shard::FORMAT)?;
    m.add("SHARD_FORMAT_VERSION", bpetok::data::shard::FORMAT_VERSION)?;
    m.add("MANIFEST_FILE", bpetok::data::shard::MANIFEST_FILE)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
