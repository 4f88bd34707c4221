"""Function words of Russian and English: never hypertokens.

Kept short on purpose: only pronouns, prepositions, conjunctions, particles,
auxiliaries and the most frequent light verbs. Content words such as «время»,
«жизнь», "work" or "free" are left to the ranking (general stop-word lists
drop them, and they matter to a scene).
"""

RU = frozenset(
    """
а ах без почему зачем отчего более бы был была были было быть в вам вас ваш ваша ваше ваши вдруг ведь во вот
все всё всего всех вы где да даже для до его ее её ей ему если есть еще ещё же за здесь
и из или им ими их к как какая какие каким какой когда кого кое ком кому которая которого
которое которой котором которые который кто ли либо лишь между меня мне мной мною мой моя моё мое
мои мы на над надо наш наша наше наши не него нее неё ней нем нём нему нет ни нибудь никогда ним ними
них но ну о об однако он она они оно от ох очень по под после потом потому почти при про
раз разве с сам сама сами само свой своя своё свое свои себе себя со совсем так также такой там
те тебе тебя тем теперь то тоже той только том тот ту ты у уж уже хоть хотя чего чем через что
чтоб чтобы чья чьё чей эта эти этим этих это этого этой этом этот эту я ж б ль бы-то -то -нибудь
будто будет будут буду будем будешь будете был было быв является являются
""".split()
)

EN = frozenset(
    """
a about above after again against all am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves out
over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs
them themselves then there there's these they they'd they'll they're they've this those through to too
under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
which while who who's whom why why's will with won't would wouldn't you you'd you'll you're you've your
yours yourself yourselves just also still even ever really yet would shall may might must do does
s t d ll re ve m don doesn didn isn aren wasn weren won wouldn shouldn couldn
""".split()
)

ALL = RU | EN
