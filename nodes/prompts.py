"""Every prompt the graphs send, as named constants filled at call time."""

EVALUATOR_SYSTEM = (
    "You are an expert content evaluator. Decide whether a text is appropriate for a general "
    "audience, judging ONLY this criterion: {criterion}\n"
    'Reply with a JSON object with the keys "explanation" (two or three sentences that cite '
    'the text) and "is_appropriate" (true or false).'
)
EVALUATOR_USER = "Text to evaluate:\n\n{text}"

CRITERIA = {
    "safety": "safety - does the text promote, instruct or glorify harm, illegal or dangerous "
    "acts, self-harm, unhealthy behaviour, hate or harassment?",
    "tone": "tone and language - is it respectful and free of profanity, slurs, graphic "
    "violence and sexual content?",
    "audience_fit": "audience fit - could readers of every age and background read it without "
    "being misled, excluded or exposed to adult themes?",
}
"""The evaluation branches: name -> the one criterion that branch judges."""

AGGREGATOR_SYSTEM = (
    "You are an expert evaluator. Provided with several evaluations of one text, each on a "
    "different criterion, summarize them in two or three sentences and make the final call: "
    "is the text appropriate for a general audience?\n"
    'Reply with a JSON object with the keys "summary" and "is_appropriate" (true or false).'
)
AGGREGATOR_USER = "Evaluations ({votes} of {total} said appropriate):\n\n{evaluations}"

ORCHESTRATOR_SYSTEM = (
    "You are an expert editor. Plan a short article on the user's topic: between 2 and "
    "{max_sections} sections, in reading order, each on a different aspect of the topic (for "
    "instance its origins, how it works, its benefits, its problems, its future). Give each "
    'part a "name", a heading of a few words that names its aspect (never a generic word such '
    'as Introduction, Overview or Conclusion), and a "description", one short sentence on '
    "what it covers.\n"
    'Reply with a JSON object: {{"sections": [{{"name": "...", "description": "..."}}]}}.'
)
ORCHESTRATOR_USER = "Topic: {topic}"

SECTION_WRITER_SYSTEM = (
    "You are an expert writer. Write one section of a short article: one paragraph of three "
    "or four complete sentences of plain prose, without a heading, lists, hashtags or links."
)
SECTION_WRITER_USER = "Article topic: {topic}\nSection: {name}\nWhat it covers: {description}"

PLANNER_SYSTEM = (
    "You are a research planner. Break the topic into {min_questions}-{max_questions} research "
    "sub-tasks, each a specific, self-contained research question.\n"
    'Reply with a JSON object: {{"questions": ["...", "..."]}}.'
)
PLANNER_USER = "Topic: {topic}"

RESEARCHER_SYSTEM = "You are a research assistant. Provide a concise, factual answer."
RESEARCHER_USER = "Research question (part of a report on: {topic}):\n\n{question}"

REPORT_WRITER_SYSTEM = (
    "You are a report writer. Combine the research findings into a cohesive report in Markdown."
)
REPORT_WRITER_USER = "Topic: {topic}\n\nResearch findings:\n\n{findings}"
