"""Each protocol's documented request and response shapes (written here from the public API
references) read into the expected neutral values, and convert into the others' shapes."""

from __future__ import annotations

from cfgstore_gateway.protocols import claude, gemini, openai_chat, responses
from cfgstore_gateway.protocols import neutral as n

PNG = "iVBORw0KGgo="
WEATHER = n.Tool(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
QUESTION = n.Text("What is in this picture, and the weather in Paris?")
CALL = n.ToolCall("call_1", "get_weather", '{"city":"Paris"}')
CONVERSATION = (
    n.Message("user", (QUESTION, n.Image("image/png", PNG))),
    n.Message("assistant", (n.Text("A cat. Checking the weather."), CALL)),
    n.Message("user", (n.ToolResult("call_1", (n.Text("18 C, sunny"),)),)),
)
EXPECTED = n.ChatRequest(
    model="m",
    messages=CONVERSATION,
    system="Be brief.",
    tools=(WEATHER,),
    tool_choice=n.ToolChoice("auto"),
    max_tokens=256,
    temperature=0.5,
    stream=True,
)
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_openai_chat_request() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "A cat. Checking the weather.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": SCHEMA,
                },
            }
        ],
        "tool_choice": "auto",
        "max_tokens": 256,
        "temperature": 0.5,
        "stream": True,
    }
    assert openai_chat.parse_request(body) == EXPECTED


def test_anthropic_messages_request() -> None:
    body = {
        "model": "m",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture, and the weather in Paris?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "A cat. Checking the weather."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C, sunny"}
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather for a city", "input_schema": SCHEMA}
        ],
        "tool_choice": {"type": "auto"},
        "temperature": 0.5,
        "stream": True,
    }
    assert claude.parse_request(body) == EXPECTED


def test_gemini_request() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is in this picture, and the weather in Paris?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "A cat. Checking the weather."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {"content": "18 C, sunny"},
                        }
                    }
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING"}},
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "generationConfig": {"maxOutputTokens": 256, "temperature": 0.5},
    }
    parsed = gemini.parse_request(body, model="m")
    # Gemini has no call ids: the call gets one, the result takes it by name.
    call = parsed.messages[1].parts[1]
    assert isinstance(call, n.ToolCall) and call.id
    expected_messages = (
        CONVERSATION[0],
        n.Message(
            "assistant",
            (CONVERSATION[1].parts[0], n.ToolCall(call.id, "get_weather", '{"city":"Paris"}')),
        ),
        n.Message("user", (n.ToolResult(call.id, (n.Text("18 C, sunny"),), name="get_weather"),)),
    )
    assert parsed == n.ChatRequest(
        model="m",
        messages=expected_messages,
        system="Be brief.",
        tools=(WEATHER,),
        tool_choice=n.ToolChoice("auto"),
        max_tokens=256,
        temperature=0.5,
    )


def test_responses_request() -> None:
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "What is in this picture, and the weather in Paris?",
                    },
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "A cat. Checking the weather."}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": SCHEMA,
            },
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "max_output_tokens": 256,
        "temperature": 0.5,
        "stream": True,
    }
    assert responses.parse_request(body) == EXPECTED


def test_a_claude_request_becomes_openai_chat_with_the_tool_round_trip() -> None:
    body = openai_chat.render_request(EXPECTED)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "18 C, sunny",
    }
    assert body["stream_options"] == {"include_usage": True}


def test_an_openai_reply_becomes_an_anthropic_message() -> None:
    reply = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 10},
        },
    }
    message = claude.render_response(openai_chat.parse_response(reply))
    assert message["content"] == [
        {"type": "tool_use", "id": "call_9", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 20,
        "output_tokens": 7,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 0,
    }


def test_a_gemini_safety_stop_reads_as_content_filter() -> None:
    reply = {
        "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "SAFETY"}],
        "usageMetadata": {
            "promptTokenCount": 5,
            "candidatesTokenCount": 0,
            "thoughtsTokenCount": 3,
        },
    }
    parsed = gemini.parse_response(reply)
    assert parsed.stop == "content_filter"
    assert parsed.usage == n.Usage(input_tokens=5, output_tokens=3, reasoning_tokens=3)
    assert openai_chat.render_response(parsed)["choices"][0]["finish_reason"] == "content_filter"
