<?php
$CONFIG = array('overwrite.cli.url' => shell_exec('hostname'));
