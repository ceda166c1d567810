//! Conversations for fine-tuning: Mistral's SentencePiece instruct formats (v1, v2, v3 of
//! `mistral-common` 1.x) token for token, with a per-token loss mask.
//!
//! A conversation is the JSON people store for fine-tuning (`{"messages": [...], "tools": [...]}`,
//! messages as `mistral-common` and OpenAI write them, plus a per-assistant-message `"weight"`).
//! Encoding it takes three steps, each the one of `mistral-common`'s
//! `MistralTokenizer.encode_chat_completion` in its fine-tuning validation mode:
//!
//! 1. [`Conversation::from_value`] reads the messages (the fields and types `mistral-common`'s
//!    pydantic models accept) and validates them (its `MistralRequestValidator` in `finetuning`
//!    mode: roles in order, the last message an assistant's, tool calls and results paired,
//!    names and ids well formed);
//! 2. [`ChatSpec::plan`] normalizes them (consecutive messages of the same role and weight
//!    merged, system prompts gathered, tool JSON normalized) and writes the turns as texts and
//!    control ids ([`ChatPlan`]), each marked as a training target or not;
//! 3. [`ChatPlan::encode`] encodes the texts with the tokenizer.
//!
//! Targets (`docs/chat.md`): the tokens of every assistant message (its content, or its
//! `[TOOL_CALLS]` and their JSON, and its closing `</s>`) unless its weight is 0; with
//! [`TrainOn::All`], every token.

pub mod json;

use std::fmt;

use crate::{Encoder, PieceType, Tokenizer};
pub use json::{Value, ValueError};

/// A SentencePiece instruct format of `mistral-common` 1.x.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChatFormat {
    /// Mistral 7B Instruct v0.1/v0.2, Mixtral 8x7B Instruct: `[INST]` as plain text, the system
    /// prompt in the first user turn, no tools.
    V1,
    /// Control tokens `[INST]`/`[/INST]`, the system prompt and the tools in the last user turn,
    /// tool calls and results before the last user turn dropped.
    V2,
    /// Mixtral 8x22B Instruct, Mistral 7B Instruct v0.3: v2 with every tool call and result kept,
    /// with their ids.
    V3,
}

impl ChatFormat {
    pub fn name(self) -> &'static str {
        match self {
            ChatFormat::V1 => "v1",
            ChatFormat::V2 => "v2",
            ChatFormat::V3 => "v3",
        }
    }

    /// The format a vocabulary is for: v3 when it has the control piece `[INST]`, else v1.
    pub fn for_tokenizer(tok: &Tokenizer) -> ChatFormat {
        if control_id(tok, "[INST]").is_some() {
            ChatFormat::V3
        } else {
            ChatFormat::V1
        }
    }
}

impl std::str::FromStr for ChatFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(ChatFormat::V1),
            "v2" => Ok(ChatFormat::V2),
            "v3" => Ok(ChatFormat::V3),
            _ => Err(format!("expected v1, v2 or v3, got {s:?}")),
        }
    }
}

/// Which tokens are training targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TrainOn {
    /// The assistant messages' tokens (not those of a message with weight 0).
    #[default]
    Assistant,
    /// Every token.
    All,
}

impl TrainOn {
    pub fn name(self) -> &'static str {
        match self {
            TrainOn::Assistant => "assistant",
            TrainOn::All => "all",
        }
    }
}

impl std::str::FromStr for TrainOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "assistant" => Ok(TrainOn::Assistant),
            "all" => Ok(TrainOn::All),
            _ => Err(format!("expected assistant or all, got {s:?}")),
        }
    }
}

/// Why a conversation cannot be encoded. `message` is the index of the message at fault in the
/// conversation as given (counted from 0), when one is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatError {
    pub message: Option<usize>,
    pub reason: String,
}

impl ChatError {
    fn at(message: usize, reason: impl Into<String>) -> Self {
        ChatError {
            message: Some(message),
            reason: reason.into(),
        }
    }

    fn whole(reason: impl Into<String>) -> Self {
        ChatError {
            message: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message {
            Some(i) => write!(f, "message {i}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ChatError {}

/// A conversation's ids and loss mask: `mask[i]` is whether `ids[i]` is a training target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatTokens {
    pub ids: Vec<u32>,
    pub mask: Vec<bool>,
}

/// One piece of a conversation in order: a text to encode, or a control id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text { text: String, target: bool },
    Id { id: u32, target: bool },
}

/// A conversation written out, ready to encode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatPlan {
    pub parts: Vec<Part>,
}

impl ChatPlan {
    /// The UTF-8 bytes of its texts.
    pub fn text_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text { text, .. } => text.len(),
                Part::Id { .. } => 0,
            })
            .sum()
    }

    /// Encodes the texts with `encoder` (as `sentencepiece` encodes each one alone: every text
    /// begins with the dummy-prefix space).
    pub fn encode(&self, encoder: &mut Encoder<'_>) -> ChatTokens {
        let mut out = ChatTokens::default();
        for part in &self.parts {
            match part {
                Part::Text { text, target } => {
                    let ids = encoder.encode(text, false, false);
                    out.mask.resize(out.mask.len() + ids.len(), *target);
                    out.ids.extend_from_slice(&ids);
                }
                Part::Id { id, target } => {
                    out.ids.push(*id);
                    out.mask.push(*target);
                }
            }
        }
        out
    }

    /// Counts the tokens [`ChatPlan::encode`] makes, without keeping them.
    pub fn count(&self, encoder: &mut Encoder<'_>) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text { text, .. } => encoder.count(text.as_bytes()),
                Part::Id { .. } => 1,
            })
            .sum()
    }
}

fn control_id(tok: &Tokenizer, piece: &str) -> Option<u32> {
    let id = tok.piece_to_id(piece);
    (tok.id_to_piece(id).ok() == Some(piece) && tok.piece_type(id).ok() == Some(PieceType::Control))
        .then_some(id)
}

/// The control ids of the v2/v3 formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Controls {
    begin_inst: u32,
    end_inst: u32,
    begin_tools: u32,
    end_tools: u32,
    begin_results: u32,
    end_results: u32,
    tool_calls: u32,
}

/// A format and a target rule, bound to the ids of one tokenizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatSpec {
    pub format: ChatFormat,
    pub train_on: TrainOn,
    bos: u32,
    eos: u32,
    controls: Option<Controls>,
}

impl ChatSpec {
    /// Checks that `tok` has what `format` writes: `<s>` and `</s>`, and for v2/v3 the control
    /// pieces `[INST]`, `[/INST]`, `[AVAILABLE_TOOLS]`, `[/AVAILABLE_TOOLS]`, `[TOOL_RESULTS]`,
    /// `[/TOOL_RESULTS]` and `[TOOL_CALLS]`.
    pub fn new(tok: &Tokenizer, format: ChatFormat, train_on: TrainOn) -> Result<Self, ChatError> {
        let (Some(bos), Some(eos)) = (tok.bos_id(), tok.eos_id()) else {
            return Err(ChatError::whole(
                "the instruct formats need <s> and </s>, and this vocabulary lacks one",
            ));
        };
        let controls = match format {
            ChatFormat::V1 => None,
            ChatFormat::V2 | ChatFormat::V3 => {
                let get = |piece: &str| {
                    control_id(tok, piece).ok_or_else(|| {
                        ChatError::whole(format!(
                            "format {} writes the control piece {piece}, which this vocabulary \
                             lacks (the Mixtral 8x7B vocabulary has none: use format v1)",
                            format.name()
                        ))
                    })
                };
                Some(Controls {
                    begin_inst: get("[INST]")?,
                    end_inst: get("[/INST]")?,
                    begin_tools: get("[AVAILABLE_TOOLS]")?,
                    end_tools: get("[/AVAILABLE_TOOLS]")?,
                    begin_results: get("[TOOL_RESULTS]")?,
                    end_results: get("[/TOOL_RESULTS]")?,
                    tool_calls: get("[TOOL_CALLS]")?,
                })
            }
        };
        Ok(ChatSpec {
            format,
            train_on,
            bos,
            eos,
            controls,
        })
    }

    /// Parses, validates and writes out the conversation in the JSON text `text`: an object with
    /// `messages` and optionally `tools` (other keys are ignored).
    pub fn plan_json(&self, text: &str) -> Result<ChatPlan, ChatError> {
        let value = Value::parse(text)
            .map_err(|err| ChatError::whole(format!("not a JSON conversation: {err}")))?;
        let conversation = Conversation::from_value(value, self.format)?;
        self.plan(&conversation)
    }

    /// [`ChatSpec::plan_json`] and [`ChatPlan::encode`].
    pub fn encode_json(
        &self,
        encoder: &mut Encoder<'_>,
        text: &str,
    ) -> Result<ChatTokens, ChatError> {
        Ok(self.plan_json(text)?.encode(encoder))
    }

    /// [`ChatSpec::encode_json`] of every text, in order, on up to `threads` threads (0: all
    /// CPUs) of `tok` (the tokenizer this spec was made for).
    pub fn encode_json_batch<T: AsRef<str> + Sync>(
        &self,
        tok: &Tokenizer,
        texts: &[T],
        threads: usize,
    ) -> Vec<Result<ChatTokens, ChatError>> {
        let threads = if threads == 0 {
            crate::data::pipeline::default_threads()
        } else {
            threads
        };
        let threads = tok.batch_threads(texts.iter().map(|t| t.as_ref().len()), threads);
        if threads <= 1 {
            let mut encoder = tok.encoder();
            return texts
                .iter()
                .map(|t| self.encode_json(&mut encoder, t.as_ref()))
                .collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<Result<ChatTokens, ChatError>>>> =
            texts.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut encoder = tok.encoder();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(text) = texts.get(i) else { break };
                        let made = self.encode_json(&mut encoder, text.as_ref());
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(made);
                    }
                });
            }
        });
        slots
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(|p| p.into_inner())
                    .expect("every text was encoded")
            })
            .collect()
    }

    /// Normalizes a validated conversation and writes it out in this format.
    pub fn plan(&self, conversation: &Conversation) -> Result<ChatPlan, ChatError> {
        let turns = normalize(&conversation.messages);
        let system = system_prompt(&conversation.messages);
        let mut w = Writer {
            spec: self,
            parts: vec![Part::Id {
                id: self.bos,
                target: self.train_on == TrainOn::All,
            }],
        };
        let first_user = turns.iter().position(|t| matches!(t.kind, TurnKind::User));
        let last_user = turns.iter().rposition(|t| matches!(t.kind, TurnKind::User));
        if self.format == ChatFormat::V2 {
            check_v2_tool_results(&turns, last_user)?;
        }
        for (idx, turn) in turns.iter().enumerate() {
            let before_last_user = last_user.is_some_and(|last| idx < last);
            match &turn.kind {
                TurnKind::User => {
                    let is_first = Some(idx) == first_user;
                    let is_last = Some(idx) == last_user;
                    w.user(turn, &system, &conversation.tools, is_first, is_last)?;
                }
                TurnKind::Tool(tool) => w.tool(turn, tool, before_last_user)?,
                TurnKind::Assistant { tool_calls, weight } => {
                    w.assistant(turn, tool_calls, *weight, before_last_user)?
                }
            }
        }
        Ok(ChatPlan { parts: w.parts })
    }
}

/// A message's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A message's content: absent (`null`), a string, or a list of text chunks.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    None,
    Str(String),
    Chunks(Vec<String>),
}

impl Content {
    /// Python's `bool(message.content)`.
    fn is_truthy(&self) -> bool {
        match self {
            Content::None => false,
            Content::Str(s) => !s.is_empty(),
            Content::Chunks(chunks) => !chunks.is_empty(),
        }
    }
}

/// Tool-call arguments as given: a string (JSON or not), an object, or `null`.
#[derive(Clone, Debug, PartialEq)]
pub enum Arguments {
    Str(String),
    Object(Value),
    Null,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// `"null"` when not given, as in `mistral-common`.
    pub id: String,
    pub name: String,
    pub arguments: Arguments,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Content,
    /// Assistant messages: `None` when absent or `null`.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Tool messages.
    pub tool_call_id: Option<String>,
    /// Tool messages.
    pub name: Option<String>,
    /// Assistant messages: the fine-tuning weight (0 or 1), `None` when absent or `null`.
    pub weight: Option<f64>,
}

/// A function the assistant may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// A JSON object (a JSON Schema; not checked against draft 7).
    pub parameters: Value,
}

/// A validated conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
}

impl Conversation {
    /// Reads `{"messages": [...], "tools": [...]}` (`tools` optional or `null`; other keys are
    /// ignored) and validates it for `format`.
    pub fn from_value(value: Value, format: ChatFormat) -> Result<Self, ChatError> {
        let Value::Object(pairs) = value else {
            return Err(ChatError::whole(format!(
                "a conversation is a JSON object with \"messages\", not {}",
                value.type_name()
            )));
        };
        let mut messages = None;
        let mut tools = Value::Null;
        for (key, value) in pairs {
            match key.as_str() {
                "messages" => messages = Some(value),
                "tools" => tools = value,
                _ => {}
            }
        }
        let Some(messages) = messages else {
            return Err(ChatError::whole(
                "a conversation needs a \"messages\" list, and this object has none",
            ));
        };
        Conversation::from_parts(messages, tools, format)
    }

    /// Reads and validates the messages and tools (`Value::Null` for none).
    pub fn from_parts(
        messages: Value,
        tools: Value,
        format: ChatFormat,
    ) -> Result<Self, ChatError> {
        let Value::Array(items) = messages else {
            return Err(ChatError::whole(format!(
                "\"messages\" must be a list, not {}",
                messages.type_name()
            )));
        };
        let messages = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| read_message(i, item))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = match tools {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| read_tool(i, item))
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(ChatError::whole(format!(
                    "\"tools\" must be a list or null, not {}",
                    other.type_name()
                )))
            }
        };
        let conversation = Conversation { messages, tools };
        validate(&conversation, format)?;
        Ok(conversation)
    }
}

fn take_str(i: usize, field: &str, value: Value) -> Result<String, ChatError> {
    match value {
        Value::Str(s) => Ok(s),
        other => Err(ChatError::at(
            i,
            format!("\"{field}\" must be a string, not {}", other.type_name()),
        )),
    }
}

fn take_opt_str(i: usize, field: &str, value: Value) -> Result<Option<String>, ChatError> {
    match value {
        Value::Null => Ok(None),
        other => take_str(i, field, other).map(Some),
    }
}

fn unknown_key(i: usize, what: &str, key: &str, allowed: &[&str]) -> ChatError {
    ChatError::at(
        i,
        format!(
            "{what} has the key \"{key}\", which is not one of {}",
            allowed
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

fn read_content(i: usize, value: Value) -> Result<Content, ChatError> {
    match value {
        Value::Null => Ok(Content::None),
        Value::Str(s) => Ok(Content::Str(s)),
        Value::Array(chunks) => {
            let mut texts = Vec::with_capacity(chunks.len());
            for chunk in chunks {
                let Value::Object(pairs) = chunk else {
                    return Err(ChatError::at(
                        i,
                        format!(
                            "a content chunk must be an object like {{\"type\": \"text\", \
                             \"text\": \"...\"}}, not {}",
                            chunk.type_name()
                        ),
                    ));
                };
                let (mut kind, mut text) = (None, None);
                for (key, value) in pairs {
                    match key.as_str() {
                        "type" => kind = Some(take_str(i, "type", value)?),
                        "text" => text = Some(take_str(i, "text", value)?),
                        _ => return Err(unknown_key(i, "a text chunk", &key, &["type", "text"])),
                    }
                }
                match kind.as_deref() {
                    Some("text") => {}
                    Some(other) => {
                        return Err(ChatError::at(
                            i,
                            format!(
                                "content chunks of type \"{other}\" are not supported: the \
                                 SentencePiece instruct formats take text only"
                            ),
                        ))
                    }
                    None => {
                        return Err(ChatError::at(i, "a content chunk needs \"type\": \"text\""))
                    }
                }
                let Some(text) = text else {
                    return Err(ChatError::at(i, "a text chunk needs \"text\""));
                };
                texts.push(text);
            }
            Ok(Content::Chunks(texts))
        }
        other => Err(ChatError::at(
            i,
            format!(
                "\"content\" must be a string or a list of text chunks, not {}",
                other.type_name()
            ),
        )),
    }
}

fn read_message(i: usize, value: Value) -> Result<Message, ChatError> {
    let Value::Object(pairs) = value else {
        return Err(ChatError::at(
            i,
            format!("a message must be an object, not {}", value.type_name()),
        ));
    };
    let role = match pairs.iter().find(|(k, _)| k == "role") {
        None => return Err(ChatError::at(i, "a message needs a \"role\"")),
        Some((_, Value::Str(role))) => match role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ChatError::at(
                    i,
                    format!(
                        "unknown role {other:?}: expected \"system\", \"user\", \"assistant\" \
                         or \"tool\""
                    ),
                ))
            }
        },
        Some((_, other)) => {
            return Err(ChatError::at(
                i,
                format!("\"role\" must be a string, not {}", other.type_name()),
            ))
        }
    };
    let allowed: &[&str] = match role {
        Role::System | Role::User => &["role", "content"],
        Role::Assistant => &["role", "content", "tool_calls", "prefix", "weight"],
        Role::Tool => &["role", "content", "tool_call_id", "name"],
    };
    let mut message = Message {
        role,
        content: Content::None,
        tool_calls: None,
        tool_call_id: None,
        name: None,
        weight: None,
    };
    let mut has_content = false;
    for (key, value) in pairs {
        if !allowed.contains(&key.as_str()) {
            let what = format!("a {} message", role.name());
            return Err(unknown_key(i, &what, &key, allowed));
        }
        match key.as_str() {
            "role" => {}
            "content" => {
                has_content = true;
                message.content = read_content(i, value)?;
            }
            "tool_calls" => {
                message.tool_calls = match value {
                    Value::Null => None,
                    Value::Array(calls) => Some(
                        calls
                            .into_iter()
                            .map(|call| read_tool_call(i, call))
                            .collect::<Result<_, _>>()?,
                    ),
                    other => {
                        return Err(ChatError::at(
                            i,
                            format!(
                                "\"tool_calls\" must be a list or null, not {}",
                                other.type_name()
                            ),
                        ))
                    }
                }
            }
            "prefix" => match value {
                Value::Bool(false) => {}
                Value::Bool(true) => {
                    return Err(ChatError::at(
                        i,
                        "\"prefix\": true continues a message at inference; a fine-tuning \
                         conversation cannot have it",
                    ))
                }
                other => {
                    return Err(ChatError::at(
                        i,
                        format!("\"prefix\" must be a boolean, not {}", other.type_name()),
                    ))
                }
            },
            "weight" => {
                message.weight = match value {
                    Value::Null => None,
                    Value::Int(digits) => Some(digits.parse::<f64>().unwrap_or(f64::INFINITY)),
                    Value::Float(x) => Some(x),
                    Value::Bool(b) => Some(f64::from(u8::from(b))),
                    // pydantic's float reads numeric strings too ("1", " 0.0 ").
                    Value::Str(text) if text.trim().parse::<f64>().is_ok() => {
                        text.trim().parse::<f64>().ok()
                    }
                    other => {
                        return Err(ChatError::at(
                            i,
                            format!("\"weight\" must be 0 or 1, not {}", other.type_name()),
                        ))
                    }
                }
            }
            "tool_call_id" => message.tool_call_id = take_opt_str(i, "tool_call_id", value)?,
            "name" => message.name = take_opt_str(i, "name", value)?,
            _ => unreachable!("only allowed keys get here"),
        }
    }
    let needs_content = role != Role::Assistant;
    if needs_content && (!has_content || message.content == Content::None) {
        return Err(ChatError::at(
            i,
            format!("a {} message needs \"content\"", role.name()),
        ));
    }
    Ok(message)
}

fn read_tool_call(i: usize, value: Value) -> Result<ToolCall, ChatError> {
    let Value::Object(pairs) = value else {
        return Err(ChatError::at(
            i,
            format!("a tool call must be an object, not {}", value.type_name()),
        ));
    };
    let mut id = "null".to_owned();
    let mut function = None;
    for (key, value) in pairs {
        match key.as_str() {
            "id" => id = take_str(i, "id", value)?,
            "type" => {
                if value != Value::Str("function".into()) {
                    return Err(ChatError::at(
                        i,
                        "a tool call's \"type\" must be \"function\"",
                    ));
                }
            }
            "function" => function = Some(value),
            _ => {
                return Err(unknown_key(
                    i,
                    "a tool call",
                    &key,
                    &["id", "type", "function"],
                ))
            }
        }
    }
    let Some(Value::Object(pairs)) = function else {
        return Err(ChatError::at(
            i,
            "a tool call needs \"function\": {\"name\": ..., \"arguments\": ...}",
        ));
    };
    let (mut name, mut arguments) = (None, None);
    for (key, value) in pairs {
        match key.as_str() {
            "name" => name = Some(take_str(i, "name", value)?),
            "arguments" => {
                arguments = Some(match value {
                    Value::Str(s) => Arguments::Str(s),
                    Value::Null => Arguments::Null,
                    object @ Value::Object(_) => Arguments::Object(object),
                    other => {
                        return Err(ChatError::at(
                            i,
                            format!(
                                "a tool call's \"arguments\" must be a JSON string or an \
                                 object, not {}",
                                other.type_name()
                            ),
                        ))
                    }
                })
            }
            _ => {
                return Err(unknown_key(
                    i,
                    "a tool call's function",
                    &key,
                    &["name", "arguments"],
                ))
            }
        }
    }
    let (Some(name), Some(arguments)) = (name, arguments) else {
        return Err(ChatError::at(
            i,
            "a tool call's function needs \"name\" and \"arguments\"",
        ));
    };
    Ok(ToolCall {
        id,
        name,
        arguments,
    })
}

fn read_tool(t: usize, value: Value) -> Result<Tool, ChatError> {
    let err = |reason: String| ChatError::whole(format!("tool {t}: {reason}"));
    let Value::Object(pairs) = value else {
        return Err(err(format!("must be an object, not {}", value.type_name())));
    };
    let mut function = None;
    for (key, value) in pairs {
        match key.as_str() {
            "type" => {
                if value != Value::Str("function".into()) {
                    return Err(err("\"type\" must be \"function\"".into()));
                }
            }
            "function" => function = Some(value),
            _ => {
                return Err(err(format!(
                    "unknown key \"{key}\" (expected \"type\", \"function\")"
                )))
            }
        }
    }
    let Some(Value::Object(pairs)) = function else {
        return Err(err(
            "needs \"function\": {\"name\": ..., \"parameters\": {...}}".into(),
        ));
    };
    let (mut name, mut description, mut parameters) = (None, String::new(), None);
    for (key, value) in pairs {
        match (key.as_str(), value) {
            ("name", Value::Str(s)) => name = Some(s),
            ("description", Value::Str(s)) => description = s,
            ("parameters", object @ Value::Object(_)) => parameters = Some(object),
            ("strict", Value::Bool(_)) => {}
            (key @ ("name" | "description" | "parameters" | "strict"), other) => {
                let want = match key {
                    "parameters" => "an object",
                    "strict" => "a boolean",
                    _ => "a string",
                };
                return Err(err(format!(
                    "\"{key}\" must be {want}, not {}",
                    other.type_name()
                )));
            }
            (key, _) => {
                return Err(err(format!(
                    "unknown key \"{key}\" in \"function\" (expected \"name\", \
                     \"description\", \"parameters\", \"strict\")"
                )))
            }
        }
    }
    let Some(name) = name else {
        return Err(err("its function needs a \"name\"".into()));
    };
    let Some(parameters) = parameters else {
        return Err(err("its function needs \"parameters\" (an object)".into()));
    };
    if !is_name(&name) {
        return Err(err(format!("function name {name:?} {NAME_RULE}")));
    }
    Ok(Tool {
        name,
        description,
        parameters,
    })
}

const NAME_RULE: &str = "must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes";
const ID_RULE: &str = "must be 9 characters of a-z, A-Z, 0-9";

/// Python's `re.match(r"^[CLASS]{min,max}$", s)`: `$` also matches before a final `\n`.
fn py_match(s: &str, allowed: impl Fn(char) -> bool, min: usize, max: usize) -> bool {
    let core = s.strip_suffix('\n').unwrap_or(s);
    let n = core.chars().count();
    (min..=max).contains(&n) && core.chars().all(allowed)
}

fn is_name(s: &str) -> bool {
    py_match(
        s,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        1,
        64,
    )
}

fn is_v3_id(s: &str) -> bool {
    py_match(s, |c| c.is_ascii_alphanumeric(), 9, 9)
}

/// `MistralRequestValidator` (v1, v2) and `MistralRequestValidatorV3` in `finetuning` mode.
fn validate(conversation: &Conversation, format: ChatFormat) -> Result<(), ChatError> {
    let messages = &conversation.messages;
    let Some(last) = messages.len().checked_sub(1) else {
        return Err(ChatError::whole(
            "a conversation needs at least one message",
        ));
    };
    if messages[last].role != Role::Assistant {
        return Err(ChatError::at(
            last,
            format!(
                "a fine-tuning conversation must end with an assistant message, not a {} message",
                messages[last].role.name()
            ),
        ));
    }
    for (i, pair) in messages.windows(2).enumerate() {
        let (prev, cur) = (pair[0].role, pair[1].role);
        let ok = match prev {
            Role::System => matches!(cur, Role::User | Role::Assistant | Role::System),
            Role::User => matches!(cur, Role::Assistant | Role::System | Role::User),
            Role::Assistant => matches!(cur, Role::Assistant | Role::User | Role::Tool),
            Role::Tool => matches!(cur, Role::Assistant | Role::Tool | Role::User),
        };
        if !ok {
            return Err(ChatError::at(
                i + 1,
                format!(
                    "a {} message cannot follow a {} message",
                    cur.name(),
                    prev.name()
                ),
            ));
        }
    }
    // Tool results against calls, as mistral-common counts them (from the second message on).
    let mut expected: i64 = 0;
    for (i, m) in messages.iter().enumerate().skip(1) {
        match m.role {
            Role::Tool => {
                expected -= 1;
                if expected < 0 {
                    // mistral-common reports it at the end; the first tool result too many is
                    // the message to name.
                    return Err(ChatError::at(
                        i,
                        "more tool results than tool calls: this result answers no call",
                    ));
                }
            }
            Role::Assistant => {
                if expected != 0 {
                    return Err(ChatError::at(
                        i,
                        format!(
                            "{expected} tool call(s) of the previous assistant message have no \
                             result before this assistant message"
                        ),
                    ));
                }
                if let Some(calls) = &m.tool_calls {
                    expected = calls.len() as i64;
                }
            }
            _ => {}
        }
    }
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::Assistant => {
                let has_calls = m.tool_calls.as_ref().is_some_and(|c| !c.is_empty());
                if m.content.is_truthy() == has_calls {
                    return Err(ChatError::at(
                        i,
                        if has_calls {
                            "an assistant message has either content or tool calls, not both"
                        } else {
                            "an assistant message needs content or tool calls, and this one has \
                             neither"
                        },
                    ));
                }
                for call in m.tool_calls.iter().flatten() {
                    if format == ChatFormat::V3 && !(call.id == "null" && i == last) {
                        if call.id == "null" {
                            return Err(ChatError::at(
                                i,
                                "a tool call needs an \"id\" (only the last message's may be \
                                 left out)",
                            ));
                        }
                        if !is_v3_id(&call.id) {
                            return Err(ChatError::at(
                                i,
                                format!("tool call id {:?} {ID_RULE}", call.id),
                            ));
                        }
                    }
                    if !is_name(&call.name) {
                        return Err(ChatError::at(
                            i,
                            format!("function name {:?} {NAME_RULE}", call.name),
                        ));
                    }
                }
                if let Some(w) = m.weight {
                    if w != 0.0 && w != 1.0 {
                        return Err(ChatError::at(
                            i,
                            format!("\"weight\" must be 0 or 1, not {w}"),
                        ));
                    }
                }
            }
            Role::Tool => {
                if let Some(name) = &m.name {
                    if !is_name(name) {
                        return Err(ChatError::at(i, format!("tool name {name:?} {NAME_RULE}")));
                    }
                }
                if format == ChatFormat::V3 {
                    match &m.tool_call_id {
                        None => {
                            return Err(ChatError::at(
                                i,
                                "a tool message needs \"tool_call_id\" in format v3",
                            ))
                        }
                        Some(id) if !is_v3_id(id) => {
                            return Err(ChatError::at(i, format!("tool_call_id {id:?} {ID_RULE}")))
                        }
                        Some(_) => {}
                    }
                }
            }
            Role::User | Role::System => {}
        }
    }
    Ok(())
}

/// A message after normalization; `source` is the index of its first message as given.
struct Turn {
    source: usize,
    kind: TurnKind,
    content: String,
}

enum TurnKind {
    User,
    Assistant {
        tool_calls: Vec<ToolCall>,
        weight: Option<f64>,
    },
    Tool(ToolTurn),
}

struct ToolTurn {
    tool_call_id: Option<String>,
    name: Option<String>,
}

/// The text of contents joined as `mistral-common` joins them: every non-empty string and
/// every non-empty text chunk, separated by a blank line.
fn join_contents<'a>(contents: impl Iterator<Item = &'a Content>) -> String {
    let mut out = String::new();
    let mut push = |text: &str| {
        if !text.is_empty() {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(text);
        }
    };
    for content in contents {
        match content {
            Content::None => {}
            Content::Str(s) => push(s),
            Content::Chunks(chunks) => chunks.iter().for_each(|c| push(c)),
        }
    }
    out
}

/// The system prompt: every system message with content, joined by blank lines; `None` when
/// there is none.
fn system_prompt(messages: &[Message]) -> Option<String> {
    let prompts: Vec<String> = messages
        .iter()
        .filter(|m| m.role == Role::System && m.content.is_truthy())
        .map(|m| join_contents(std::iter::once(&m.content)))
        .collect();
    (!prompts.is_empty()).then(|| prompts.join("\n\n"))
}

/// `InstructRequestNormalizer._aggregate_messages`: runs of messages with the same role and
/// weight become one (system messages vanish; tool messages stay one each), and a conversation
/// that does not start with a user turn gets an empty one first.
fn normalize(messages: &[Message]) -> Vec<Turn> {
    let mut turns = Vec::new();
    let mut start = 0;
    while start < messages.len() {
        let first = &messages[start];
        let mut end = start + 1;
        while end < messages.len()
            && messages[end].role == first.role
            && messages[end].weight == first.weight
        {
            end += 1;
        }
        let group = &messages[start..end];
        match first.role {
            Role::System => {}
            Role::User => turns.push(Turn {
                source: start,
                kind: TurnKind::User,
                content: join_contents(group.iter().map(|m| &m.content)),
            }),
            Role::Assistant => turns.push(Turn {
                source: start,
                kind: TurnKind::Assistant {
                    tool_calls: group
                        .iter()
                        .flat_map(|m| m.tool_calls.iter().flatten().cloned())
                        .collect(),
                    weight: first.weight,
                },
                content: join_contents(group.iter().map(|m| &m.content)),
            }),
            Role::Tool => {
                for (k, m) in group.iter().enumerate() {
                    turns.push(Turn {
                        source: start + k,
                        kind: TurnKind::Tool(ToolTurn {
                            tool_call_id: m.tool_call_id.clone(),
                            name: m.name.clone(),
                        }),
                        content: join_contents(std::iter::once(&m.content)),
                    });
                }
            }
        }
        start = end;
    }
    if !matches!(
        turns.first(),
        Some(Turn {
            kind: TurnKind::User,
            ..
        })
    ) {
        turns.insert(
            0,
            Turn {
                source: 0,
                kind: TurnKind::User,
                content: String::new(),
            },
        );
    }
    turns
}

/// `InstructTokenizerV2._validate_tool_results`: after the last user turn, one tool-call turn
/// may have one result only.
fn check_v2_tool_results(turns: &[Turn], last_user: Option<usize>) -> Result<(), ChatError> {
    let from = last_user.unwrap_or(0);
    let (mut calling, mut results) = (false, 0);
    for turn in turns.iter().skip(from) {
        match &turn.kind {
            TurnKind::Assistant { tool_calls, .. } => {
                calling = !tool_calls.is_empty();
                results = 0;
            }
            TurnKind::Tool(_) if calling => {
                results += 1;
                if results > 1 {
                    return Err(ChatError::at(
                        turn.source,
                        "format v2 has no way to write several tool results for one \
                         assistant turn after the last user message (v3 has)",
                    ));
                }
            }
            TurnKind::Tool(_) => {}
            TurnKind::User => {
                calling = false;
                results = 0;
            }
        }
    }
    Ok(())
}

/// A JSON string that `mistral-common` parses back when it can (`_parse_json_content` after
/// `_normalize_json_content`): the empty string is `{}`, JSON is its value, anything else stays
/// a string.
fn json_or_string(s: &str, source: usize) -> Result<Value, ChatError> {
    if s.is_empty() {
        return Ok(Value::Object(Vec::new()));
    }
    match Value::parse(s) {
        Ok(value) => Ok(value),
        Err(ValueError::Syntax { .. }) => Ok(Value::Str(s.to_owned())),
        Err(err) => Err(ChatError::at(
            source,
            format!("its JSON cannot be read: {err}"),
        )),
    }
}

struct Writer<'s> {
    spec: &'s ChatSpec,
    parts: Vec<Part>,
}

impl Writer<'_> {
    fn controls(&self) -> Controls {
        self.spec
            .controls
            .expect("v2 and v3 specs always hold their control ids")
    }

    fn text(&mut self, text: String, target: bool) {
        self.parts.push(Part::Text {
            text,
            target: target || self.spec.train_on == TrainOn::All,
        });
    }

    fn id(&mut self, id: u32, target: bool) {
        self.parts.push(Part::Id {
            id,
            target: target || self.spec.train_on == TrainOn::All,
        });
    }

    fn user(
        &mut self,
        turn: &Turn,
        system: &Option<String>,
        tools: &[Tool],
        is_first: bool,
        is_last: bool,
    ) -> Result<(), ChatError> {
        let system = system.as_deref().filter(|s| !s.is_empty());
        if self.spec.format == ChatFormat::V1 {
            if !tools.is_empty() {
                return Err(ChatError::whole(
                    "format v1 has no way to write tools (mistral-common drops them silently); \
                     use v2 or v3, or leave \"tools\" out",
                ));
            }
            let content = match system {
                Some(system) if is_first => format!("{system}\n\n{}", turn.content),
                _ => turn.content.clone(),
            };
            self.text(format!("[INST] {content} [/INST]"), false);
            return Ok(());
        }
        let c = self.controls();
        if is_last && !tools.is_empty() {
            let listed = Value::Array(tools.iter().map(tool_value).collect());
            self.id(c.begin_tools, false);
            self.text(listed.dumps(), false);
            self.id(c.end_tools, false);
        }
        let content = match system {
            Some(system) if is_last => format!("{system}\n\n{}", turn.content),
            _ => turn.content.clone(),
        };
        self.id(c.begin_inst, false);
        self.text(content, false);
        self.id(c.end_inst, false);
        Ok(())
    }

    fn tool(
        &mut self,
        turn: &Turn,
        tool: &ToolTurn,
        before_last_user: bool,
    ) -> Result<(), ChatError> {
        let result = match self.spec.format {
            ChatFormat::V1 => {
                return Err(ChatError::at(
                    turn.source,
                    "format v1 has no way to write tool results; use v2 or v3",
                ))
            }
            ChatFormat::V2 if before_last_user => return Ok(()),
            ChatFormat::V2 => Value::Array(vec![Value::Object(vec![
                (
                    "name".to_owned(),
                    tool.name.clone().map_or(Value::Null, Value::Str),
                ),
                (
                    "content".to_owned(),
                    json_or_string(&turn.content, turn.source)?,
                ),
            ])]),
            ChatFormat::V3 => Value::Object(vec![
                (
                    "content".to_owned(),
                    json_or_string(&turn.content, turn.source)?,
                ),
                (
                    "call_id".to_owned(),
                    tool.tool_call_id.clone().map_or(Value::Null, Value::Str),
                ),
            ]),
        };
        let c = self.controls();
        self.id(c.begin_results, false);
        self.text(result.dumps(), false);
        self.id(c.end_results, false);
        Ok(())
    }

    fn assistant(
        &mut self,
        turn: &Turn,
        tool_calls: &[ToolCall],
        weight: Option<f64>,
        before_last_user: bool,
    ) -> Result<(), ChatError> {
        let target = weight != Some(0.0);
        let v1 = self.spec.format == ChatFormat::V1;
        if !tool_calls.is_empty() {
            if v1 {
                return Err(ChatError::at(
                    turn.source,
                    "format v1 has no way to write tool calls; use v2 or v3",
                ));
            }
            if !turn.content.is_empty() {
                return Err(ChatError::at(
                    turn.source,
                    "these assistant messages, merged into one turn, have both content and tool \
                     calls, which formats v1 to v3 cannot write",
                ));
            }
            if self.spec.format == ChatFormat::V2 && before_last_user {
                return Ok(());
            }
            let mut calls = Vec::with_capacity(tool_calls.len());
            for call in tool_calls {
                let arguments = match &call.arguments {
                    Arguments::Null => Value::Object(Vec::new()),
                    Arguments::Object(value) => value.clone(),
                    Arguments::Str(s) => json_or_string(s, turn.source)?,
                };
                let mut pairs = vec![
                    ("name".to_owned(), Value::Str(call.name.clone())),
                    ("arguments".to_owned(), arguments),
                ];
                if self.spec.format == ChatFormat::V3 && !call.id.is_empty() && call.id != "null" {
                    pairs.push(("id".to_owned(), Value::Str(call.id.clone())));
                }
                calls.push(Value::Object(pairs));
            }
            let c = self.controls();
            self.id(c.tool_calls, target);
            self.text(Value::Array(calls).dumps(), target);
        } else {
            if turn.content.is_empty() {
                return Err(ChatError::at(
                    turn.source,
                    "an assistant message needs content or tool calls",
                ));
            }
            let content = if v1 {
                turn.content.clone()
            } else {
                turn.content.trim_end_matches(' ').to_owned()
            };
            self.text(content, target);
        }
        self.id(self.spec.eos, target);
        Ok(())
    }
}

/// A tool as `mistral-common` lists it: `Tool.model_dump()` without `strict`.
fn tool_value(tool: &Tool) -> Value {
    Value::Object(vec![
        ("type".to_owned(), Value::Str("function".to_owned())),
        (
            "function".to_owned(),
            Value::Object(vec![
                ("name".to_owned(), Value::Str(tool.name.clone())),
                (
                    "description".to_owned(),
                    Value::Str(tool.description.clone()),
                ),
                ("parameters".to_owned(), tool.parameters.clone()),
            ]),
        ),
    ])
}
