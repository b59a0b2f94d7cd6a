<?php
$CONFIG = array('redis' => array('host' => 'from-a', 'port' => 7001));
